"""The dashboard in a real browser (Debian's Chromium driven by Playwright) over the world's HTTPS server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fabguard.fixture.device import SimulatedDevice
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


@pytest.fixture
def page(world: World) -> Iterator[Any]:
    """A browser page; closed before the world's server stops (an open event stream would hold it)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(ignore_https_errors=True, viewport={"width": 1440, "height": 1000})
        try:
            yield context.new_page()
        finally:
            context.close()
            browser.close()


def test_dashboard_follows_provisioning_and_raises_a_clone_alert_without_reload(
    world: World, page: Any, tmp_path: Path
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    order = world.order(5, order_id="po-live")
    fixture = world.fixture("line-1")
    first = tested_device(fixture, "SN0000001")
    fixture.provision(order, first.serial, first.csr_pem())

    page.goto(world.url + "/")
    page.fill("#token", world.admin_token)
    page.click("#login-form button[type=submit]")
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

    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)

    # Acknowledging it from the page records an event and the alert shows as acknowledged.
    alert.locator("button.ack").click()
    page.wait_for_selector('#alerts [data-kind="key_reused"].acked', timeout=10_000)
    with world.admin() as admin:
        acks = admin.get("/api/v1/events", params={"kind": "alert.acknowledged"}).json()
    assert [a["detail"]["alert_kind"] for a in acks] == ["key_reused"]
    assert page.evaluate("window.__notReloaded") is True


def test_a_wrong_token_is_refused_on_the_login_page(world: World, page: Any) -> None:
    page.goto(world.url + "/")
    page.fill("#token", "fgt_not-a-real-token")
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#login-error:not([hidden])")
    assert "refused" in page.text_content("#login-error")
    assert page.is_hidden("#dash")
