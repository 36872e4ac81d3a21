"""A quota lease issued by the central server, and a site agent made from it, provisioning on loopback."""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from fabguard.api.responses.leases import LeaseBundle
from fabguard.api.server import ServerThread
from fabguard.domain.errors import Conflict, InvalidRequest
from fabguard.domain.identities.pools import pool_from_json
from fabguard.domain.values import OrderId, ProductId
from fabguard.fixture.client import FabGuardClientError
from fabguard.ledger.lease import LeaseError
from fabguard.service.agent.agent_request import parse_agent_request
from fabguard.service.agent.lease_acts import LeaseIssue
from fabguard.service.agent.site_agent import init_agent, prepare_agent
from fabguard.service.approvals import requests
from fabguard.service.catalog import identity_pools, orders
from fabguard.service.core import events
from fabguard.service.core.instance import Instance
from fabguard.service.provisioning import testrecords
from tests.agent.conftest import Site, agent_fixture, approved_lease, lease_for
from tests.support import REQUESTER, TOKEN, USER_PIN, SoftHsm, World, second_person_approves, tested_device


def test_a_lease_takes_its_units_out_of_the_central_quota(any_site: Site) -> None:
    site = any_site
    order = orders.get_order(site.world.inst, site.order_id)
    assert (order.used, order.remaining) == (3, 7)
    with pytest.raises(Conflict) as exc:
        lease_for(site.world, site.order_id, site.world.tmp / "agent-2", units=8)
    assert exc.value.code == "lease_exceeds_quota"
    assert orders.get_order(site.world.inst, site.order_id).used == 3


def test_a_lease_for_an_agent_of_another_site_or_of_no_units_is_refused(world: World, tmp_path: Path) -> None:
    order_id = world.order(10)
    with pytest.raises(InvalidRequest) as exc:
        lease_for(world, order_id, tmp_path / "a", site="cm-b")
    assert exc.value.code == "agent_request_invalid"
    with pytest.raises(InvalidRequest) as exc:
        lease_for(world, order_id, tmp_path / "b", units=0)
    assert exc.value.code == "lease_units_invalid"
    assert orders.get_order(world.inst, order_id).used == 0


def test_a_changed_lease_is_refused_by_the_agent(world: World, tmp_path: Path) -> None:
    bundle = lease_for(world, world.order(10), tmp_path / "agent")
    terms = bundle["lease"]
    assert isinstance(terms, dict)
    terms["units"] = 300
    with pytest.raises(LeaseError):
        init_agent(tmp_path / "agent", json.dumps(bundle))


def test_the_agent_provisions_offline_and_stops_at_the_lease_limit(
    site: Site, agent: tuple[Instance, ServerThread]
) -> None:
    _, server = agent
    site.world.server.stop()  # the link to the central server is cut
    with agent_fixture(site, server) as client:
        issued = []
        for n in range(3):
            device = tested_device(client, f"SN-A{n}")
            issued.append(client.provision(site.order_id, device.serial, device.csr_pem()))
        device = tested_device(client, "SN-A9")
        with pytest.raises(FabGuardClientError) as exc:
            client.provision(site.order_id, device.serial, device.csr_pem())
    assert exc.value.code == "quota_exhausted"
    # Each certificate chains to the central root through the agent's name-constrained CA.
    certs = site.home / "ca"
    leaf = site.world.tmp / "leaf.pem"
    leaf.write_text(issued[0].certificate_pem)
    check = subprocess.run(
        ["openssl", "verify", "-CAfile", str(certs / "root.pem"), "-untrusted", str(certs / "issuing.pem"), str(leaf)],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_the_agents_test_records_are_bound_to_the_leases_site(site: Site, agent: tuple[Instance, ServerThread]) -> None:
    """At the agent, a record of one of the lease's fixtures is the lease's site's: it opens the lease's order."""
    inst, server = agent
    with agent_fixture(site, server) as client:
        device = tested_device(client, "SN-SITE")
        client.provision(site.order_id, device.serial, device.csr_pem())
    (record,) = testrecords.records_for_serial(inst, "SN-SITE")
    assert (record["station_id"], record["site_id"]) == ("line-1", "cm-a")


def test_the_agent_refuses_after_the_lease_ends(site: Site) -> None:
    lease = site.lease["lease"]
    assert isinstance(lease, dict)
    later = datetime.fromisoformat(str(lease["not_after"])) + timedelta(seconds=1)
    inst = Instance.open(site.home, clock=lambda: later)
    try:
        with ServerThread(inst) as server, agent_fixture(site, server) as client:
            device = tested_device(client, "SN-LATE")
            with pytest.raises(FabGuardClientError) as exc:
                client.provision(site.order_id, device.serial, device.csr_pem())
            assert exc.value.code == "order_expired"
    finally:
        inst.close()


def test_a_lease_is_issued_over_the_api_by_an_admin_only(world: World, tmp_path: Path) -> None:
    order_id = world.order(5)
    request = json.loads(prepare_agent(tmp_path / "agent", site_id="cm-a"))
    body = {"units": 2, "expires_in_minutes": 60, "agent_request": request}
    with world.admin() as admin:
        asked = admin.post(f"/api/v1/orders/{order_id}/leases", json=body)
        assert asked.status_code == 202 and asked.json()["state"] == "pending", asked.text
        # Nothing is reserved or certified until a second person approves.
        assert orders.get_order(world.inst, order_id).used == 0
        assert admin.get("/api/v1/leases", params={"order_id": order_id}).json() == []
        own = admin.post(f"/api/v1/approvals/{asked.json()['id']}/approve")
        assert own.status_code == 403 and own.json()["error"]["code"] == "same_approver"
        done = second_person_approves(world.inst, requests.get_approval(world.inst, asked.json()["id"]))
        bundle = admin.get(f"/api/v1/leases/{done['lease_id']}/bundle")
        assert bundle.status_code == 200, bundle.text
        # Served as signed (not through the model), and the model that documents it fits it exactly.
        assert LeaseBundle.model_validate(bundle.json()).model_dump(exclude_unset=True) == bundle.json()
        too_many = admin.post(f"/api/v1/orders/{order_id}/leases", json={**body, "units": 4})
        assert too_many.status_code == 409 and too_many.json()["error"]["code"] == "lease_exceeds_quota"
        listed = admin.get("/api/v1/leases", params={"order_id": order_id}).json()
    assert [lease["units"] for lease in listed] == [2]
    init_agent(tmp_path / "agent", json.dumps(bundle.json()))
    assert orders.get_order(world.inst, order_id).used == 2
    kinds = [e["kind"] for e in events.list_events(world.inst, limit=50)]
    assert "approval.requested" in kinds and "approval.approved" in kinds and "lease.issued" in kinds


def test_racing_leases_never_take_more_than_the_quota(any_world: World, tmp_path: Path) -> None:
    order_id = any_world.order(10)
    # Three requests that each fit when asked for, approved at once: the reservation at approval decides.
    pending = [
        requests.request(
            any_world.inst,
            OrderId(order_id).value,
            LeaseIssue.of(
                4, timedelta(hours=1), parse_agent_request(prepare_agent(tmp_path / f"agent-{n}", site_id="cm-a"))
            ),
            by=REQUESTER,
        )
        for n in range(3)
    ]

    def lease(asked: requests.ApprovalView) -> str:
        try:
            second_person_approves(any_world.inst, asked)
            return "issued"
        except Conflict as exc:
            return exc.code

    with ThreadPoolExecutor(3) as pool:
        outcomes = sorted(pool.map(lease, pending))
    assert outcomes == ["issued", "issued", "lease_exceeds_quota"]
    assert orders.get_order(any_world.inst, order_id).used == 8


def test_an_agent_whose_issuing_key_is_in_its_token_provisions(
    world: World, tmp_path: Path, softhsm: SoftHsm, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FABGUARD_PKCS11_PIN", USER_PIN)
    world.credentials("line-1")
    order_id, home = world.order(5), tmp_path / "agent"
    request = prepare_agent(
        home, site_id="cm-a", key_backend="pkcs11", pkcs11_module=softhsm.module, pkcs11_token=TOKEN
    )
    bundle = approved_lease(world.inst, order_id, request, units=1, expires_in=timedelta(hours=1))
    init_agent(home, json.dumps(bundle))
    assert not (home / "keys" / "issuing.key.pem").exists()  # the key never left the token
    site = Site(world, order_id, bundle, home)
    inst = Instance.open(home)
    try:
        with ServerThread(inst) as server, agent_fixture(site, server) as client:
            device = tested_device(client, "SN-HSM")
            issued = client.provision(order_id, device.serial, device.csr_pem())
    finally:
        inst.close()
    assert "BEGIN CERTIFICATE" in issued.certificate_pem


def test_a_lease_never_outlives_its_order(world: World, tmp_path: Path) -> None:
    order_id = world.order(5, valid_until=world.inst.clock() + timedelta(hours=2))
    bundle = lease_for(world, order_id, tmp_path / "agent")  # asks for 8 hours
    terms = bundle["lease"]
    assert isinstance(terms, dict)
    assert datetime.fromisoformat(str(terms["not_after"])) == orders.get_order(world.inst, order_id).valid_until


def test_an_order_whose_product_draws_identities_from_pools_is_not_leased(world: World, tmp_path: Path) -> None:
    order_id = world.order(10)
    identity_pools.set_pools(
        world.inst, ProductId("sensor"), pool_from_json({"macs": {"prefix": "00-1B-63"}}), actor="t"
    )
    with pytest.raises(Conflict) as exc:
        lease_for(world, order_id, tmp_path / "agent")
    assert exc.value.code == "lease_order_unsupported" and "pools" in exc.value.message
    assert orders.get_order(world.inst, order_id).used == 0
