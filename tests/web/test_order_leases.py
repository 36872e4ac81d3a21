"""The order page shows the order's quota leases, in Debian's Chromium: while an offline site agent holds a
lease its units count as used and the page says how many it holds; once the agent finished, synced and the
lease was closed, the page shows what it made and what went back to the order (ADR 0022)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from fabguard.service.agent import lease_close, sync
from fabguard.service.agent.site_agent import finish_agent, sync_package
from tests.agent.conftest import agent_fixture, make_site, serve
from tests.support import World, tested_device
from tests.web.test_dashboard import CHROMIUM, browser

__all__ = ["browser"]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")


def test_the_order_page_shows_a_lease_held_then_closed(world: World, browser: Any, tmp_path: Path) -> None:
    expect = pytest.importorskip("playwright.sync_api").expect
    site = make_site(world, tmp_path / "agent")
    terms = site.lease["lease"]
    assert isinstance(terms, dict)
    lease_id = str(terms["lease_id"])
    with contextmanager(serve)(site) as (agent, server), agent_fixture(site, server) as line:
        device = tested_device(line, "SN-LEASE-1")
        line.provision(site.order_id, device.serial, device.csr_pem())
        sync.sync_lease(world.inst, sync_package(agent, site.home), actor="test")
        context = browser.new_context(ignore_https_errors=True, viewport={"width": 1400, "height": 900})
        try:
            page = context.new_page()
            page.goto(world.url + f"/#order={site.order_id}")
            page.fill("#token", world.admin_token)
            page.click("#login-form button[type=submit]")
            row = page.locator(f'#order-leases tr[data-lease="{lease_id}"]')
            expect(row).to_be_visible(timeout=15_000)
            cells = row.locator("td")
            expect(cells.nth(2)).to_have_text("3")
            expect(cells.nth(3)).to_have_text("1")
            expect(cells.nth(4)).to_have_text("\u2013")  # nothing returned while the lease is open
            expect(cells.nth(5)).to_have_text("active")
            expect(page.locator("#order-used")).to_have_text("3")  # the lease's 3 units left the quota
            expect(page.locator("#order-leased")).to_have_text("3 units in 1 open lease (1 made as last synced)")

            # The agent finishes, its final log is synced, the lease is closed: the page follows the stream.
            finish_agent(agent, site.home)
            sync.sync_lease(world.inst, sync_package(agent, site.home), actor="test")
            lease_close.close_lease(world.inst, lease_id, actor="test")
            expect(cells.nth(5)).to_have_text("closed", timeout=15_000)
            expect(cells.nth(4)).to_have_text("2")
            expect(page.locator("#order-used")).to_have_text("1")
            expect(page.locator("#order-leased-fact")).to_be_hidden()
        finally:
            context.close()
