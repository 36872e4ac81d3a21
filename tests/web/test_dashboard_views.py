"""Every view of the dashboard, as a reader and as a site's operator, in Debian's Chromium at a desk's
width (1400 px) and a supervisor's phone (390 px): what each shows, the range in the address, the way
from a failing step to a unit's genealogy, and a session that signing out ends.

Screenshots go to ``$FABGUARD_SCREENSHOTS`` (default ``/tmp/fabguard-screens``), never into the repo."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from sqlalchemy import select

from fabguard.domain.values import Role, SiteId
from fabguard.fixture.openhtf_records import openhtf_record
from fabguard.service.access import tokens
from fabguard.service.ledger import merkle_log
from fabguard.store.models import Unit
from tests.support import World, tested_device
from tests.web.test_dashboard import CHROMIUM, browser

__all__ = ["browser"]

SHOTS = Path(os.environ.get("FABGUARD_SCREENSHOTS", "/tmp/fabguard-screens"))
WIDTHS = {"desk": 1400, "phone": 390}

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")


@contextmanager
def _page(browser: Any, width: int) -> Iterator[Any]:
    context = browser.new_context(ignore_https_errors=True, viewport={"width": width, "height": 900})
    try:
        yield context.new_page()
    finally:
        context.close()


def _line(world: World) -> dict[str, str]:
    """Two sites: cm-a with two stations, failures and a retest; cm-b with one unit. Tokens for both."""
    order = world.order(50, order_id="po-a1")
    other = world.order(5, order_id="po-b1", site="cm-b")
    one, two = world.fixture("line-1"), world.fixture("line-2")
    for n in range(8):
        unit = tested_device(one if n % 2 else two, f"SNA{n:04d}", seed=n)
        (one if n % 2 else two).provision(order, unit.serial, unit.csr_pem())
    bad = tested_device(two, "SNA0100", passed=False, seed=101)
    two.upload_test_record(openhtf_record("SNA0100", "line-2", fail=False, rng=random.Random(102)))
    two.provision(order, bad.serial, bad.csr_pem())
    tested_device(two, "SNA0101", passed=False, seed=103)
    b = world.fixture("line-b", site="cm-b")
    unit = tested_device(b, "SNB0001", seed=7)
    b.provision(other, unit.serial, unit.csr_pem())
    merkle_log.make_checkpoint(world.inst)
    _, operator = tokens.create_token(
        world.inst, name="Ana (CM A)", role=Role.OPERATOR, site_id=SiteId("cm-a"), actor="t"
    )
    _, engineer = tokens.create_token(world.inst, name="Eve", role=Role.ENGINEER, actor="t")
    return {"engineer": engineer, "operator": operator}


def _sign_in(page: Any, world: World, token: str, path: str = "/") -> None:
    page.goto(world.url + path)
    page.fill("#token", token)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#live.on", timeout=15_000)


def _shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(300)  # charts draw on the next frame
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.mark.parametrize("size", WIDTHS)
def test_every_view_as_an_engineer(world: World, browser: Any, size: str) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    expect = sync_api.expect
    made = _line(world)
    with _page(browser, WIDTHS[size]) as page:
        _sign_in(page, world, made["engineer"])
        expect(page.locator('[data-order="po-a1"] .used')).to_have_text("9")
        expect(page.locator('[data-order="po-b1"]')).to_be_visible()
        assert page.is_visible("#field-card")
        expect(page.locator("#who")).to_contain_text("engineer") if size == "desk" else None
        _shot(page, f"engineer-overview-{size}")

        # The range is in the address: a week in 3-hour buckets; a link with it opens the same view.
        page.select_option("#range", "week")
        page.wait_for_url("**/?range=week")
        expect(page.locator("#bucket-note")).to_have_text("per 3 h · week")
        _shot(page, f"engineer-overview-week-{size}")
        page.select_option("#range", "custom")
        page.fill("#range-since", "2026-01-01T00:00")
        page.fill("#range-until", "2026-01-31T00:00")
        page.click("#range-custom button")
        page.wait_for_url("**/?range=custom&since=*&until=*")
        expect(page.locator("#bucket-note")).to_have_text("per 12 h · custom")
        page.select_option("#range", "order")
        page.wait_for_url("**/?range=order&order=po-a1")
        expect(page.locator("#kpi-provisioned")).to_have_text("10")

        # Stations: per fixture, the Pareto, and from a failing step to the unit and its genealogy.
        page.click('#nav a[data-view="stations"]')
        page.wait_for_url("**/?range=order&order=po-a1#stations")
        expect(page.locator('#stations tr[data-station="line-2"] td.fpy')).not_to_have_text("100.0%")
        expect(page.locator('#stations tr[data-station="line-1"] td.fpy')).to_have_text("100.0%")
        expect(page.locator("#lines tr[data-station]")).to_have_count(2)
        page.locator("#pareto tr[data-step]").first.click()
        failing = page.locator("#failing-units [data-failing-unit]")
        failing.first.wait_for()
        assert {failing.nth(i).get_attribute("data-failing-unit") for i in range(failing.count())} <= {
            "SNA0100",
            "SNA0101",
        }
        expect(page.locator("#dist-note")).to_contain_text("values from the newest")
        _shot(page, f"engineer-stations-{size}")
        failing.first.locator("a").click()
        page.wait_for_url("**#unit=SNA010*")
        expect(page.locator("#unit-serial")).to_have_text("SNA0100") if failing.count() == 1 else None
        page.wait_for_selector("details.record")
        _shot(page, f"engineer-unit-{size}")

        # Unit search: a prefix lists serials; the PDF export is a real PDF through the session.
        page.goto(world.url + "/#units")
        page.fill("#unit-q", "SNA000")
        page.click("#unit-search button")
        expect(page.locator("#unit-results a[data-serial]")).to_have_count(8)
        page.click('#unit-results a[data-serial="SNA0003"]')
        expect(page.locator("#unit-serial")).to_have_text("SNA0003")
        pdf = page.request.get(world.url + "/api/v1/units/SNA0003/genealogy.pdf")
        assert pdf.status == 200 and pdf.body().startswith(b"%PDF")
        _shot(page, f"engineer-units-{size}")
        # A unit back from the field, found by its certificate's fingerprint as openssl prints it: one match opens it.
        with world.inst.db.read() as s:
            pem = s.execute(select(Unit.certificate_pem).where(Unit.serial == "SNA0005")).scalar_one()
        sha = x509.load_pem_x509_certificate(pem.encode()).fingerprint(hashes.SHA256()).hex().upper()
        page.goto(world.url + "/#units")
        page.fill("#unit-q", ":".join(sha[i : i + 2] for i in range(0, 64, 2)))
        page.click("#unit-search button")
        page.wait_for_url("**#unit=SNA0005")
        expect(page.locator("#unit-serial")).to_have_text("SNA0005")

        # The order page, then signing out ends the session: a reload asks to sign in again.
        page.goto(world.url + "/#order=po-a1")
        page.wait_for_selector('#order-capability tr[data-measurement="power_rails/vcc_3v3"]')
        _shot(page, f"engineer-order-{size}")
        page.click("#logout")
        page.wait_for_selector("#login:not([hidden])")
        page.reload()
        page.wait_for_selector("#login:not([hidden])")
        assert page.request.get(world.url + "/api/v1/stats/overview").status == 401


@pytest.mark.parametrize("size", WIDTHS)
def test_an_operator_sees_its_own_site_in_every_view(world: World, browser: Any, size: str) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    expect = sync_api.expect
    made = _line(world)
    with _page(browser, WIDTHS[size]) as page:
        # A shared link opens its view with its range.
        _sign_in(page, world, made["operator"], "/?range=day#stations")
        expect(page.locator("#stations tr[data-station]")).to_have_count(2)
        assert page.input_value("#range") == "day"
        expect(page.locator("#site-badge")).to_have_text("Site cm-a only")
        page.click('#nav a[data-view="overview"]')
        expect(page.locator('[data-order="po-a1"] .used')).to_have_text("9")
        assert page.locator('[data-order="po-b1"]').count() == 0
        assert page.is_hidden("#field-card") and page.is_hidden("#field-alerts-card")
        assert page.locator("#fixtures tr[data-fixture]").count() == 2
        assert page.locator("#alerts button.ack").count() == 0
        _shot(page, f"operator-overview-{size}")
        page.click('#nav a[data-view="stations"]')
        expect(page.locator("#stations tr[data-station]")).to_have_count(2)
        assert page.locator('#stations tr[data-station="line-b"]').count() == 0
        _shot(page, f"operator-stations-{size}")
        page.goto(world.url + "/#unit=SNB0001")
        page.wait_for_selector("#unit-missing")
        page.goto(world.url + "/#unit=SNA0001")
        expect(page.locator("#unit-serial")).to_have_text("SNA0001")
        _shot(page, f"operator-unit-{size}")
        page.goto(world.url + "/#order=po-b1")
        page.wait_for_selector("#order-missing:not([hidden])")


def test_revoking_the_token_signs_the_open_page_out(world: World, browser: Any) -> None:
    """The session ends with its token: the open page, following the stream, shows the sign-in form and
    why, without a reload."""
    world.order(5, order_id="po-r")
    row, token = tokens.create_token(world.inst, name="Sam", role=Role.AUDITOR, actor="t")
    with _page(browser, WIDTHS["desk"]) as page:
        _sign_in(page, world, token)
        page.wait_for_selector('[data-order="po-r"]')
        tokens.revoke_token(world.inst, row.id, actor="t")
        page.wait_for_selector("#login:not([hidden])", timeout=90_000)
        assert "revoked" in page.text_content("#login-error")
        assert page.is_hidden("#dash")
