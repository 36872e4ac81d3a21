"""The dashboard in a real browser (Debian's Chromium driven by Playwright) over the world's HTTPS server."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from fabguard.fixture.device import SimulatedDevice
from fabguard.fixture.openhtf_records import openhtf_record
from tests.support import World, tested_device

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install chromium)"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium for the module's tests (launching it is most of a browser test's setup)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@contextmanager
def _fresh_page(browser: Any) -> Iterator[Any]:
    """A page in its own context (its own sessionStorage), closed on exit."""
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1440, "height": 1000})
    try:
        yield context.new_page()
    finally:
        context.close()


# Pages depend on their world so they close before its server stops (an open event stream would hold it).
@pytest.fixture
def page(world: World, browser: Any) -> Iterator[Any]:
    with _fresh_page(browser) as p:
        yield p


@pytest.fixture
def any_page(any_world: World, browser: Any) -> Iterator[Any]:
    with _fresh_page(browser) as p:
        yield p


def _sign_in(page: Any, world: World, path: str = "/") -> None:
    page.goto(world.url + path)
    page.fill("#token", world.admin_token)
    page.click("#login-form button[type=submit]")


def test_dashboard_follows_provisioning_and_raises_a_clone_alert_without_reload(
    world: World, page: Any, tmp_path: Path
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    order = world.order(5, order_id="po-live")
    fixture = world.fixture("line-1")
    first = tested_device(fixture, "SN0000001")
    fixture.provision(order, first.serial, first.csr_pem())

    _sign_in(page, world)
    used = page.locator('[data-order="po-live"] .used')
    used.wait_for()
    assert used.text_content() == "1"
    page.wait_for_selector("#live.on")
    page.evaluate("window.__notReloaded = true")

    second = tested_device(fixture, "SN0000002", seed=2)
    fixture.provision(order, second.serial, second.csr_pem())
    sync_api.expect(used).to_have_text("2", timeout=10_000)

    # A clone: the first unit's key offered again under another serial, with a passing test.
    clone: SimulatedDevice = first.clone_as("SN0000666")
    tested_device(fixture, clone.serial, seed=3)
    with pytest.raises(Exception, match="key_reused"):
        fixture.provision(order, clone.serial, clone.csr_pem())
    alert = page.locator('#alerts [data-kind="key_reused"]')
    alert.wait_for(timeout=10_000)
    assert "clone" in alert.text_content()
    assert page.evaluate("window.__notReloaded") is True

    # Acknowledging it from the page records an event and the alert shows as acknowledged.
    alert.locator("button.ack").click()
    page.wait_for_selector('#alerts [data-kind="key_reused"].acked', timeout=10_000)
    with world.admin() as admin:
        acks = admin.get("/api/v1/events", params={"kind": "alert.acknowledged"}).json()
    assert [a["detail"]["alert_kind"] for a in acks] == ["key_reused"]
    assert page.evaluate("window.__notReloaded") is True

    # In the field: the first unit checked genuine at one store, then at another minutes later. Both
    # checks appear, and the second raises a field clone alert, without a reload.
    first.certificate_pem = fixture.provision(order, first.serial, first.csr_pem()).certificate_pem
    with world.admin() as admin:
        for store in ("store-lisbon", "store-oslo"):
            nonce = admin.post("/api/v1/field/challenge").json()["nonce"]
            verdict = admin.post("/api/v1/field/verify", json=first.field_answer(nonce, source=store)).json()
            assert verdict["genuine"] is True
    sync_api.expect(page.locator("#field-checks tr[data-field-check]")).to_have_count(2, timeout=10_000)
    assert "store-oslo" in page.locator("#field-checks tr[data-field-check]").first.text_content()
    field_alert = page.locator("#field-alerts [data-field-alert]")
    field_alert.wait_for(timeout=10_000)
    assert "two places" in field_alert.text_content() and "SN0000001" in field_alert.text_content()
    sync_api.expect(page.locator("#field-alerts-count")).to_have_text("1")
    assert page.evaluate("window.__notReloaded") is True
    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)


def test_a_wrong_token_is_refused_on_the_login_page(world: World, page: Any) -> None:
    page.goto(world.url + "/")
    page.fill("#token", "fgt_not-a-real-token")
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#login-error:not([hidden])")
    assert "refused" in page.text_content("#login-error")
    assert page.is_hidden("#dash")


def test_an_order_page_shows_capability_and_follows_provisioning_without_reload(
    any_world: World, any_page: Any, tmp_path: Path
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    page = any_page
    order = any_world.order(10, order_id="po-cap")
    fixture = any_world.fixture("line-1")
    # Capability needs two values of a measurement (Cpk from their moving range): three units give some margin.
    for n in range(3):
        unit = tested_device(fixture, f"SN100000{n}", seed=10 + n)
        fixture.provision(order, unit.serial, unit.csr_pem())
    failed = tested_device(fixture, "SN1000009", passed=False, seed=19)

    _sign_in(page, any_world)
    page.click('[data-order="po-cap"]')
    page.wait_for_url("**/#order=po-cap")
    sync_api.expect(page.locator("#overview-view")).to_be_hidden()  # routing follows the hashchange event
    used = page.locator("#order-used")
    sync_api.expect(used).to_have_text("3")
    row = page.locator('#order-capability tr[data-measurement="power_rails/vcc_3v3"]')
    sync_api.expect(row.locator("td.cpk .index")).to_have_text(re.compile(r"^\d+\.\d\d$"))
    assert float(row.locator("td.cpk").text_content()) > 0
    assert row.locator("td.cpk .index").get_attribute("class").split()[1] in {"good", "marginal", "bad"}
    assert page.locator("#order-capability tr[data-measurement]").count() == 5
    # Yield is about the order's units: the order is alone at its site, so the failing unit, not
    # provisioned (yet), is one of them (docs/figures.md).
    sync_api.expect(page.locator("#order-fpy")).to_have_text("75.0%")
    sync_api.expect(page.locator("#order-retest")).to_have_text("0.0%")
    page.evaluate("window.__notReloaded = true")

    fixture.upload_test_record(openhtf_record(failed.serial, "line-1", fail=False, rng=random.Random(20)))
    fixture.provision(order, failed.serial, failed.csr_pem())
    sync_api.expect(used).to_have_text("4", timeout=10_000)
    sync_api.expect(page.locator("#order-fpy")).to_have_text("75.0%")
    sync_api.expect(page.locator("#order-retest")).to_have_text("25.0%")
    assert page.locator("#order-remaining").text_content() == "6"
    assert page.evaluate("window.__notReloaded") is True
    page.screenshot(path=str(tmp_path / "order.png"), full_page=True)

    # Back returns to the overview; a reload on the order's address opens the order again.
    page.go_back()
    page.wait_for_selector("#overview-view:not([hidden])")
    assert page.is_hidden("#order-view")
    page.go_forward()
    page.reload()
    sync_api.expect(page.locator("#order-used")).to_have_text("4")
    assert page.is_visible("#order-view") and page.is_hidden("#overview-view")


def test_an_unknown_order_leads_back_and_a_failed_read_offers_a_retry(world: World, page: Any) -> None:
    world.order(3, order_id="po-known")
    _sign_in(page, world, "/#order=nope")
    page.wait_for_selector("#order-missing:not([hidden])")
    assert "nope" in page.text_content("#order-missing-text")
    assert page.is_hidden("#order-page")
    page.click("#order-missing-back")
    known = page.locator('#overview-view:not([hidden]) [data-order="po-known"]')
    known.wait_for()
    assert page.is_hidden("#order-view")
    assert page.evaluate("location.hash") == ""

    # Any other failure keeps the page, says what went wrong and offers to try again.
    busy = '{"error": {"code": "unavailable", "message": "database is busy"}}'
    stats = "**/api/v1/stats/orders/**"
    page.route(stats, lambda route: route.fulfill(status=503, content_type="application/json", body=busy))
    known.click()
    page.wait_for_selector("#order-error:not([hidden])")
    assert "database is busy" in page.text_content("#order-error")
    page.unroute(stats)
    page.click("#order-error button")
    page.wait_for_selector("#order-error", state="hidden")
    assert page.text_content("#order-quota") == "3"
