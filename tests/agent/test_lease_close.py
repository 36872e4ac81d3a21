"""Closing a quota lease (ADR 0022): the units its agent did not make go back to the order, exactly, once the
agent's final log is synced; nothing the agent signs after that ever counts. Both engines, real servers."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp as x509_ocsp
from sqlalchemy import func, select, update

from fabguard.api.server import ServerThread
from fabguard.domain.errors import Conflict
from fabguard.fixture.client import FabGuardClientError, FixtureClient
from fabguard.fixture.device import SimulatedDevice
from fabguard.ledger.agent_sync import SyncDiscrepancy
from fabguard.service.agent import lease_close, quota_leases, sync
from fabguard.service.agent.site_agent import finish_agent, sync_package
from fabguard.service.analytics import dashboard_queries
from fabguard.service.authority import ocsp
from fabguard.service.catalog import orders
from fabguard.service.core import events
from fabguard.service.core.instance import Instance
from fabguard.service.ledger import reports
from fabguard.service.royalties import statements
from fabguard.store.models import Order, Unit
from tests.agent.conftest import Site, agent_fixture, lease_for
from tests.agent.test_agent_units_everywhere import _check
from tests.support import tested_device

Agent = tuple[Instance, ServerThread]


def _lease_id(site: Site) -> str:
    terms = site.lease["lease"]
    assert isinstance(terms, dict)
    return str(terms["lease_id"])


def _made(client: FixtureClient, order_id: str, serial: str) -> SimulatedDevice:
    device = tested_device(client, serial)
    device.certificate_pem = client.provision(order_id, serial, device.csr_pem()).certificate_pem
    return device


def _used(site: Site) -> int:
    return orders.get_order(site.world.inst, site.order_id).used


def _refused_close(site: Site, code: str) -> None:
    used, closed = _used(site), events.list_events(site.world.inst, kind="lease.closed")
    with pytest.raises(Conflict) as exc:
        lease_close.close_lease(site.world.inst, _lease_id(site), actor="test")
    assert exc.value.code == code
    assert _used(site) == used and events.list_events(site.world.inst, kind="lease.closed") == closed


def test_closing_after_the_agents_final_sync_returns_exactly_the_units_it_did_not_make(
    any_site: Site, any_agent: Agent
) -> None:
    site, (inst, server) = any_site, any_agent
    central, lease_id = site.world.inst, _lease_id(site)
    assert _used(site) == 3  # the lease's 3 units of the 10-unit order
    _refused_close(site, "lease_not_final")  # nothing synced: the agent may be provisioning
    with agent_fixture(site, server) as client:
        _made(client, site.order_id, "SN-C1")
        sync.sync_lease(central, sync_package(inst, site.home), actor="test")
        _refused_close(site, "lease_not_final")  # synced, but the agent may still make two more
        finished = finish_agent(inst, site.home)
        assert (finished["made"], finished["units"], finished["already"]) == (1, 3, False)
        assert finish_agent(inst, site.home)["already"] is True  # again: changes nothing
        device = tested_device(client, "SN-C2")
        with pytest.raises(FabGuardClientError) as stopped:
            client.provision(site.order_id, device.serial, device.csr_pem())
        assert stopped.value.code in ("order_inactive", "quota_exhausted")
    _refused_close(site, "lease_not_final")  # finished at the site, but that log is not home yet
    sync.sync_lease(central, sync_package(inst, site.home), actor="test")
    with site.world.admin() as admin:
        answer = admin.post(f"/api/v1/leases/{lease_id}/close")
        assert answer.status_code == 200, answer.text
        assert answer.json() == {
            "lease_id": lease_id,
            "order_id": site.order_id,
            "state": "closed",
            "leased": 3,
            "made": 1,
            "returned": 2,
            "order_used": 1,
            "order_quota": 10,
            "already": False,
        }
        # A retry (the answer lost on the way) gets the same figures and changes nothing.
        again = admin.post(f"/api/v1/leases/{lease_id}/close")
        assert again.status_code == 200, again.text
        assert again.json() == {**answer.json(), "already": True}
        assert admin.get(f"/api/v1/leases/{lease_id}").json()["state"] == "closed"
        # The order page carries its leases: the dashboard shows what each held and what came back.
        figures = admin.get(f"/api/v1/stats/orders/{site.order_id}").json()
        assert [(x["id"], x["state"], x["units"], x["units_synced"]) for x in figures["leases"]] == [
            (lease_id, "closed", 3, 1)
        ]
        assert figures["burn_down"]["used"] == 1
    assert _used(site) == 1  # the unit the agent made, and no other
    [closed] = events.list_events(central, kind="lease.closed", order_id=site.order_id)
    assert {k: closed["detail"][k] for k in ("lease_id", "leased", "made", "returned", "finished")} == {
        "lease_id": lease_id,
        "leased": 3,
        "made": 1,
        "returned": 2,
        "finished": True,
    }
    # The order's whole quota is the server's again: 9 more units, then quota_exhausted.
    line = site.world.fixture("line-2")
    for i in range(9):
        _made(line, site.order_id, f"SN-H{i}")
    late = tested_device(line, "SN-H9")
    with pytest.raises(FabGuardClientError) as full:
        line.provision(site.order_id, late.serial, late.csr_pem())
    assert full.value.code == "quota_exhausted" and _used(site) == 10


def _ocsp(central: Instance, device: SimulatedDevice, issuer: x509.Certificate) -> x509_ocsp.OCSPCertStatus:
    leaf = x509.load_pem_x509_certificate(str(device.certificate_pem).encode())
    request = x509_ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA1()).build()
    answer = ocsp.respond(central, request.public_bytes(serialization.Encoding.DER))
    response = x509_ocsp.load_der_ocsp_response(answer.der)
    assert response.response_status == x509_ocsp.OCSPResponseStatus.SUCCESSFUL
    return response.certificate_status


def _agent_at(site: Site, clock: list[datetime]) -> Iterator[tuple[Instance, ServerThread]]:
    inst = Instance.open(site.home, clock=lambda: clock[0])
    server = ServerThread(inst).start()
    try:
        yield inst, server
    finally:
        server.stop()
        inst.close()


def test_a_sync_after_the_close_is_refused_recorded_and_alerted_and_its_units_are_never_genuine(
    any_site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lease ended, the agent synced after its end, the OEM closed it; a dishonest agent then backdates a
    unit inside the lease's time and syncs it: refused, an alert, and the unit stays unknown everywhere."""
    site, central, lease_id = any_site, any_site.world.inst, _lease_id(any_site)
    not_after = datetime.fromisoformat(str(quota_leases.get_lease(central, lease_id)["not_after"]))
    clock = [not_after - timedelta(hours=1)]
    agent = _agent_at(site, clock)
    inst, server = next(agent)
    try:
        with agent_fixture(site, server) as client:
            made = _made(client, site.order_id, "SN-E1")
        clock[0] = not_after + timedelta(minutes=5)
        monkeypatch.setattr(central, "clock", lambda: clock[0])
        package = sync_package(inst, site.home)
        _refused_close(site, "lease_not_final")  # ended, but its last sync (none) came before the end
        sync.sync_lease(central, package, actor="test")
        closed = lease_close.close_lease(central, lease_id, actor="test")
        assert (closed["made"], closed["returned"], closed["order_used"]) == (1, 2, 1)
        # The agent's clock set back inside the lease: it signs one more unit, and syncs it.
        clock[0] = not_after - timedelta(minutes=30)
        with agent_fixture(site, server) as client:
            rogue = _made(client, site.order_id, "SN-E2")
        with pytest.raises(SyncDiscrepancy) as exc:
            sync.sync_lease(central, sync_package(inst, site.home), actor="test")
    finally:
        next(agent, None)
    assert exc.value.code == "lease_closed" and "1 units made after its final sync" in exc.value.message
    row = quota_leases.get_lease(central, lease_id)
    assert row["state"] == "closed" and str(row["discrepancy"]).startswith("lease_closed")
    [refused] = events.list_events(central, kind="lease.sync_refused")
    assert refused["code"] == "lease_closed" and refused["detail"]["lease_id"] == lease_id
    assert any(a.kind == "lease_discrepancy" for a in dashboard_queries.alerts(central))
    with central.db.read() as s:
        assert s.execute(select(Unit.serial).where(Unit.serial == "SN-E2")).first() is None
    assert _used(site) == 1  # nothing counted, nothing returned twice
    # The unit is not genuine in a field check: the server never issued it.
    verdict = _check(central, rogue, "store-rome")
    assert (verdict["genuine"], verdict["reason"], verdict["clone"]) == (False, "serial_unknown", "not_issued")
    # OCSP, as the unit's certificate names it: the made unit is good, the unit after the close unknown.
    agent_ca = x509.load_pem_x509_certificate(central.cas.certificate_pem(str(row["agent_ca"])).encode())
    assert _ocsp(central, made, agent_ca) == x509_ocsp.OCSPCertStatus.GOOD
    assert _ocsp(central, rogue, agent_ca) == x509_ocsp.OCSPCertStatus.UNKNOWN
    # The overproduction stands against new leases of the order and site until looked into; resolving it keeps
    # the lease closed, so it is never closed (and its units never returned) twice.
    with pytest.raises(Conflict) as blocked:
        lease_for(site.world, site.order_id, site.world.tmp / "agent-next", units=1)
    assert blocked.value.code == "lease_discrepancy"
    assert sync.resolve_discrepancy(central, lease_id, note="CM told; units scrapped", actor="test") == {
        "lease_id": lease_id,
        "state": "closed",
    }
    used, closes = _used(site), events.list_events(central, kind="lease.closed")
    again = lease_close.close_lease(central, lease_id, actor="test")
    assert (again["already"], again["returned"], again["state"]) == (True, closes[0]["detail"]["returned"], "closed")
    assert _used(site) == used and events.list_events(central, kind="lease.closed") == closes
    lease_for(site.world, site.order_id, site.world.tmp / "agent-after", units=1)


def test_units_after_the_agents_finish_entry_are_beyond_the_lease(site: Site, agent: Agent) -> None:
    """An agent whose order was opened again after 'agent finish' (by hand, in its database): its log now
    holds a unit after its finish entry, refused at sync as a discrepancy, so the lease cannot be closed."""
    inst, server = agent
    with agent_fixture(site, server) as client:
        _made(client, site.order_id, "SN-F1")
        finish_agent(inst, site.home)
        with inst.db.transaction() as s:
            s.execute(update(Order).where(Order.id == site.order_id).values(state="active", quota=3))
        _made(client, site.order_id, "SN-F2")
    with pytest.raises(SyncDiscrepancy) as exc:
        sync.sync_lease(site.world.inst, sync_package(inst, site.home), actor="test")
    assert exc.value.code == "lease_units_beyond"
    _refused_close(site, "lease_discrepancy")


def test_closing_while_the_server_provisions_the_same_order_never_passes_its_quota(
    any_site: Site, any_agent: Agent
) -> None:
    site, (inst, server) = any_site, any_agent
    central = site.world.inst
    with agent_fixture(site, server) as client:
        _made(client, site.order_id, "SN-K0")
    finish_agent(inst, site.home)
    sync.sync_lease(central, sync_package(inst, site.home), actor="test")
    line = site.world.fixture("line-2")
    devices = [tested_device(line, f"SN-K{i}") for i in range(1, 13)]  # 7 fit before the close, 9 after it

    def provision(device: SimulatedDevice) -> str:
        with FixtureClient(dataclasses.replace(line.credentials)) as own:
            try:
                own.provision(site.order_id, device.serial, device.csr_pem())
            except FabGuardClientError as exc:
                return exc.code
            return "issued"

    with ThreadPoolExecutor(max_workers=5) as pool:
        outcomes = list(pool.map(provision, devices[:4]))
        closing = pool.submit(lease_close.close_lease, central, _lease_id(site), actor="test")
        outcomes += list(pool.map(provision, devices[4:]))
        closed: dict[str, Any] = closing.result()
    assert closed["returned"] == 2
    issued = outcomes.count("issued")
    assert set(outcomes) <= {"issued", "quota_exhausted"} and 7 <= issued <= 9
    with central.db.read() as s:
        order = s.get(Order, site.order_id)
        assert order is not None
        units = s.execute(select(func.count()).select_from(Unit).where(Unit.order_id == site.order_id)).scalar_one()
    # Every unit of the quota is a unit of the order (the agent's one and the server's), none over it.
    assert order.used == units == issued + 1 <= order.quota


def test_reconciliation_and_royalties_after_a_close_count_the_units_made_and_none_returned(
    any_site: Site, any_agent: Agent
) -> None:
    site, (inst, server) = any_site, any_agent
    central = site.world.inst
    with agent_fixture(site, server) as client:
        _made(client, site.order_id, "SN-R1")
    finish_agent(inst, site.home)
    sync.sync_lease(central, sync_package(inst, site.home), actor="test")
    open_report = reports.reconciliation_report(central, order_id=site.order_id, sign_checkpoint=True)
    figures = open_report.body["figures"]
    # While the lease is open, its two units not made are the agent's still: the report says so.
    assert figures["leases"] == {"units": 3, "made": 0, "returned": 0, "open": 3}
    assert figures["remaining"] == 9 and _used(site) == 3
    lease_close.close_lease(central, _lease_id(site), actor="test")
    _made(site.world.fixture("line-2"), site.order_id, "SN-R2")
    report = reports.reconciliation_report(central, order_id=site.order_id, sign_checkpoint=True)
    figures = report.body["figures"]
    assert figures["provisioned"] == 2 and figures["ordered"] == 10
    assert figures["leases"] == {"units": 3, "made": 1, "returned": 2, "open": 0}
    order = orders.get_order(central, site.order_id)
    assert figures["remaining"] == order.quota - order.used == 8  # the report and the order agree again
    st = statements.statement(central, sign_checkpoint=True)
    lines = [line for line in st.body["lines"] if line["order_id"] == site.order_id]
    assert sum(int(line["units"]) for line in lines) == 2  # made units only: returned ones are no units
