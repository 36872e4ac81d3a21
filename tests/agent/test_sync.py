"""A site agent's log coming home: folded when it verifies; refused, recorded and alerted when not."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from cryptography import x509
from sqlalchemy import select, update

from fabguard.api.server import ServerThread
from fabguard.domain import values
from fabguard.domain.errors import Conflict
from fabguard.fixture.client import FixtureClient
from fabguard.fixture.device import SimulatedDevice
from fabguard.ledger import merkle
from fabguard.ledger.agent_sync import SyncDiscrepancy
from fabguard.ledger.checkpoint import Checkpoint, sign_checkpoint
from fabguard.ledger.entry import canonical_json, decode_entry
from fabguard.service.agent import quota_leases, sync
from fabguard.service.agent.site_agent import sync_package
from fabguard.service.analytics import dashboard_queries
from fabguard.service.approvals import requests
from fabguard.service.authority import authorities, revocation
from fabguard.service.authority.ca_acts import CaRevocation
from fabguard.service.core import events
from fabguard.service.core.instance import Instance
from fabguard.service.ledger import ledger_keys, merkle_log
from fabguard.store.models import Order, Unit
from tests.agent.conftest import Site, agent_fixture, lease_for
from tests.support import REQUESTER, second_person_approves, tested_device

Agent = tuple[Instance, ServerThread]


def _provision(client: FixtureClient, order_id: str, serials: list[str]) -> list[SimulatedDevice]:
    devices = [tested_device(client, serial) for serial in serials]
    for d in devices:
        client.provision(order_id, d.serial, d.csr_pem())
    return devices


def _lease_row(site: Site) -> dict[str, object]:
    terms = site.lease["lease"]
    assert isinstance(terms, dict)
    return quota_leases.get_lease(site.world.inst, str(terms["lease_id"]))


def _refused(site: Site, package: sync.SyncPackage, code: str) -> None:
    with pytest.raises(SyncDiscrepancy) as exc:
        sync.sync_lease(site.world.inst, package, actor="test")
    assert exc.value.code == code
    row = _lease_row(site)
    assert row["state"] == "discrepancy" and str(row["discrepancy"]).startswith(code)
    refused = events.list_events(site.world.inst, kind="lease.sync_refused")
    assert [e["code"] for e in refused] == [code]
    assert any(a.kind == "lease_discrepancy" for a in dashboard_queries.alerts(site.world.inst))
    # A new lease for the order (or the site) waits until the discrepancy is resolved.
    with pytest.raises(Conflict) as blocked:
        lease_for(site.world, site.order_id, site.world.tmp / "agent-next", units=1)
    assert blocked.value.code == "lease_discrepancy"


def _central_units(site: Site) -> list[str]:
    with site.world.inst.db.read() as s:
        return sorted(s.execute(select(Unit.serial).where(Unit.order_id == site.order_id)).scalars())


def test_the_agents_units_and_events_are_folded_into_the_ledger_sync_after_sync(
    any_site: Site, any_agent: Agent
) -> None:
    site, (inst, server) = any_site, any_agent
    with agent_fixture(site, server) as client:
        _provision(client, site.order_id, ["SN-S1", "SN-S2"])
        first = sync.sync_lease(site.world.inst, sync_package(inst, site.home), actor="test")
        _provision(client, site.order_id, ["SN-S3"])
    assert (first["units"], first["clones"]) == (2, [])
    # Over the API, as 'fabguard agent sync --central' sends it.
    package = sync_package(inst, site.home)
    with site.world.admin() as admin:
        answer = admin.post(
            f"/api/v1/leases/{package.lease_id}/sync",
            content=package.to_json(),
            headers={"Content-Type": "application/json"},
        )
    assert answer.status_code == 200, answer.text
    assert answer.json()["units"] == 1 and answer.json()["units_synced"] == 3
    assert _central_units(site) == ["SN-S1", "SN-S2", "SN-S3"]
    folded = events.list_events(site.world.inst, kind="unit.provisioned", order_id=site.order_id)
    assert [e["serial"] for e in folded] == ["SN-S1", "SN-S2", "SN-S3"]
    assert {e["actor"] for e in folded} == {f"agent:{package.lease_id}"}
    # The central ledger still verifies as one tree, and the order's quota holds the lease's units once.
    size, _ = merkle_log.tree_head(site.world.inst)
    assert size == merkle_log.entry_count(site.world.inst)
    with site.world.inst.db.read() as s:
        order = s.get(Order, site.order_id)
        assert order is not None and order.used == 3
    # The server knows the agent's units: one is revoked; the agent CA itself goes on the root's CRL.
    central = site.world.inst
    revocation.revoke_unit(central, "SN-S2", reason_code="key_compromise", note="found in the field", actor="test")
    agent_ca = str(_lease_row(site)["agent_ca"])
    asked = requests.request(central, agent_ca, CaRevocation("ca_compromise", "agent stolen"), by=REQUESTER)
    second_person_approves(central, asked)
    listed = {format(r.serial_number, "x") for r in revocation.crl(central, "root")}
    assert authorities.get_ca(central, agent_ca).cert_serial in listed


def test_the_same_package_again_is_answered_again_and_an_older_one_is_a_replay(site: Site, agent: Agent) -> None:
    inst, server = agent
    with agent_fixture(site, server) as client:
        _provision(client, site.order_id, ["SN-R1"])
    older = sync_package(inst, site.home)
    sync.sync_lease(site.world.inst, older, actor="test")
    package = sync_package(inst, site.home)  # a sync is an event of the agent's: this log is newer
    first = sync.sync_lease(site.world.inst, package, actor="test")
    # The answer was lost; the agent sends the same package: the same answer, nothing new written.
    before = merkle_log.entry_count(site.world.inst)
    again = sync.sync_lease(site.world.inst, package, actor="test")
    assert again == {**first, "resent": True}
    assert merkle_log.entry_count(site.world.inst) == before and _lease_row(site)["state"] != "discrepancy"
    assert events.list_events(site.world.inst, kind="lease.sync_refused") == []
    _refused(site, older, "lease_sync_replayed")
    sync.resolve_discrepancy(site.world.inst, package.lease_id, note="an old file sent again", actor="test")
    lease_for(site.world, site.order_id, site.world.tmp / "agent-after", units=1)


def _forged(inst: Instance, package: sync.SyncPackage, lines: list[dict[str, object]]) -> sync.SyncPackage:
    """The package a dishonest agent makes: its log rewritten, signed with its own ledger key."""
    entries = [canonical_json({**e, "index": i}) for i, e in enumerate(lines)]
    root = merkle.mth([merkle.leaf_hash(e) for e in entries])
    origin = merkle_log.origin(inst)
    note = sign_checkpoint(Checkpoint(origin, len(entries), root), origin, merkle_log.ledger_signing_key(inst))
    return dataclasses.replace(package, entries=entries, checkpoint=note)


def test_the_same_unit_twice_in_one_sync_is_a_clone(any_site: Site, any_agent: Agent) -> None:
    site, (inst, server) = any_site, any_agent
    with agent_fixture(site, server) as client:
        _provision(client, site.order_id, ["SN-D1"])
    package = sync_package(inst, site.home)
    lines = [decode_entry(e) for e in package.entries]
    unit = next(e for e in lines if e["kind"] == "unit.provisioned")
    summary = sync.sync_lease(site.world.inst, _forged(inst, package, [*lines, unit]), actor="test")
    assert summary["clones"] == ["SN-D1"] and summary["units"] == 1
    assert _central_units(site) == ["SN-D1"]
    refused = events.list_events(site.world.inst, kind="unit.refused", order_id=site.order_id)
    assert [(e["serial"], e["code"]) for e in refused] == [("SN-D1", "key_reused")]
    assert any(a.kind == "key_reused" for a in dashboard_queries.alerts(site.world.inst))
    assert _lease_row(site)["state"] == "discrepancy"


def test_bad_agent_data_is_a_recorded_discrepancy_not_a_crash(any_site: Site, any_agent: Agent) -> None:
    site, (inst, server) = any_site, any_agent
    central = site.world.inst
    with agent_fixture(site, server) as client:
        _provision(client, site.order_id, ["SN-V1"])
    package = sync_package(inst, site.home)
    lines = [decode_entry(e) for e in package.entries]
    u = next(i for i, e in enumerate(lines) if e["kind"] == "unit.provisioned")
    other_order = site.world.order(2)
    bad_unit: list[dict[str, object]] = [
        {"at": None},
        {"at": "yesterday"},
        {"at": "2026-12-03T10:00:00"},  # no offset
        {"fixture_id": None},
        {"fixture_id": "no-such-fixture"},  # a non-null foreign key at the server
        {"order_id": 5},
        {"serial": "X" * 65},
        {"code": 7},
    ]
    cases = [[*lines[:u], {**lines[u], **change}, *lines[u + 1 :]] for change in bad_unit]
    # An agent event that names another order (only the lease's order is the agent's).
    cases.append([*lines, {**lines[u], "kind": "unit.refused", "code": "key_reused", "order_id": other_order}])
    for n, forged in enumerate(cases, 1):
        with pytest.raises(SyncDiscrepancy) as exc:
            sync.sync_lease(central, _forged(inst, package, forged), actor="test")
        assert exc.value.code == "lease_sync_invalid", forged
        assert _lease_row(site)["state"] == "discrepancy"
        assert len(events.list_events(central, kind="lease.sync_refused")) == n
        sync.resolve_discrepancy(central, package.lease_id, note="looked into", actor="test")
    assert _central_units(site) == [] and _lease_row(site)["units_synced"] == 0
    assert any(a.kind == "lease_discrepancy" for a in dashboard_queries.alerts(central))
    # A certificate serial the server already holds (for another unit) is refused, not a 500.
    _provision(site.world.fixture("line-0"), site.order_id, ["SN-V0"])
    cert = x509.load_pem_x509_certificate(next(iter(package.certificates.values())).encode())
    with central.db.transaction() as s:
        s.execute(update(Unit).where(Unit.serial == "SN-V0").values(cert_serial=format(cert.serial_number, "x")))
    with site.world.admin() as admin:  # over the API: a 4xx with its code
        answer = admin.post(
            f"/api/v1/leases/{package.lease_id}/sync",
            content=package.to_json(),
            headers={"Content-Type": "application/json"},
        )
    assert answer.status_code == 422 and "certificate serial" in answer.text, answer.text
    assert answer.json()["error"]["code"] == "lease_sync_invalid"
    assert _central_units(site) == ["SN-V0"]


def test_a_tampered_agent_log_is_refused_and_changes_nothing(site: Site, agent: Agent) -> None:
    inst, server = agent
    with agent_fixture(site, server) as client:
        _provision(client, site.order_id, ["SN-T1"])
    package = sync_package(inst, site.home)
    entries = list(package.entries)
    entries[1] = entries[1].replace(b'"cm-a"', b'"cm-b"', 1)
    assert entries[1] != package.entries[1]
    before = merkle_log.entry_count(site.world.inst)
    _refused(site, dataclasses.replace(package, entries=entries), "lease_sync_tampered")
    assert _central_units(site) == []
    assert merkle_log.entry_count(site.world.inst) == before + 1  # the refusal only


def test_a_unit_whose_serial_is_a_path_is_refused_at_sync(
    site: Site, agent: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An agent issued a certificate for 'SN/../A1' (an agent older than issue 23, or a dishonest one): its
    certificate matches its entry, but a serial is an identifier, never a path, so the sync is refused."""
    inst, server = agent
    monkeypatch.setattr(values, "_SERIAL_RE", re.compile(r"[A-Za-z0-9][A-Za-z0-9.:/-]{0,63}"))  # the old rule
    with agent_fixture(site, server) as client:
        _provision(client, site.order_id, ["SN/../A1"])
    monkeypatch.undo()
    package = sync_package(inst, site.home)
    with pytest.raises(SyncDiscrepancy, match=re.escape("SN/../A1")) as exc:
        sync.sync_lease(site.world.inst, package, actor="test")
    assert exc.value.code == "lease_sync_invalid"
    assert _central_units(site) == []


def test_a_forked_agent_log_is_refused(site: Site, agent: Agent) -> None:
    inst, server = agent
    with agent_fixture(site, server) as client:
        _provision(client, site.order_id, ["SN-F1"])
        sync.sync_lease(site.world.inst, sync_package(inst, site.home), actor="test")
        _provision(client, site.order_id, ["SN-F2"])
    package = sync_package(inst, site.home)
    # The agent rewrites its history and signs the rewritten log with its own ledger key.
    entries = list(package.entries)
    entries[0] = entries[0].replace(b'"agent.initialized"', b'"agent.initialised"', 1)
    root = merkle.mth([merkle.leaf_hash(e) for e in entries])
    origin = merkle_log.origin(inst)
    note = sign_checkpoint(Checkpoint(origin, len(entries), root), origin, merkle_log.ledger_signing_key(inst))
    _refused(site, dataclasses.replace(package, entries=entries, checkpoint=note), "lease_sync_forked")
    assert _central_units(site) == ["SN-F1"]


def test_units_beyond_the_lease_are_refused(site: Site, agent: Agent) -> None:
    inst, server = agent
    with inst.db.transaction() as s:  # a dishonest agent raises its own quota
        s.execute(update(Order).values(quota=5))
    with agent_fixture(site, server) as client:
        _provision(client, site.order_id, [f"SN-B{n}" for n in range(4)])
    _refused(site, sync_package(inst, site.home), "lease_units_beyond")
    assert _central_units(site) == []


def test_a_key_seen_by_the_server_and_the_agent_is_raised_as_a_clone(site: Site, agent: Agent) -> None:
    world = site.world
    inst, server = agent
    original = _provision(world.fixture("line-0"), site.order_id, ["SN-C0"])[0]
    with agent_fixture(site, server) as client:
        clone = original.clone_as("SN-C1")
        tested_device(client, clone.serial)
        client.provision(site.order_id, clone.serial, clone.csr_pem())
    summary = sync.sync_lease(world.inst, sync_package(inst, site.home), actor="test")
    assert summary["clones"] == ["SN-C1"]
    assert _central_units(site) == ["SN-C0"]
    refused = events.list_events(world.inst, kind="unit.refused", order_id=site.order_id)
    assert [(e["serial"], e["code"]) for e in refused] == [("SN-C1", "key_reused")]
    assert any(a.kind == "key_reused" for a in dashboard_queries.alerts(world.inst))
    assert _lease_row(site)["state"] == "discrepancy"


def test_a_sync_package_that_is_not_one_is_refused(tmp_path: Path) -> None:
    with pytest.raises(Exception) as exc:
        sync.parse_sync_package(json.dumps({"format": "other"}))
    assert getattr(exc.value, "code", None) == "lease_sync_invalid"


def test_a_lease_issued_before_a_key_rotation_still_syncs_after_it(site: Site, agent: Agent) -> None:
    """The lease bundle is signed by the ledger key of its day; a rotation since must not orphan it."""
    inst, server = agent
    central = site.world.inst
    with agent_fixture(site, server) as client:
        _provision(client, site.order_id, ["SN-K1"])
    ledger_keys.rotate(central, actor="admin")
    ledger_keys.finish_rotation(central, actor="admin")
    folded = sync.sync_lease(central, sync_package(inst, site.home), actor="test")
    assert folded["units"] == 1 and _central_units(site) == ["SN-K1"]


def test_the_agents_own_kinds_are_folded_once_prefixed(any_site: Site) -> None:
    """The agent's ``agent.initialized`` and ``agent.sync_prepared`` keep their kind (not ``agent.agent.*``);
    a kind of the agent's without the prefix gets it, so it stays apart from the server's own."""
    central = any_site.world.inst
    inst = Instance.open(any_site.home)
    try:
        sync.sync_lease(central, sync_package(inst, any_site.home), actor="test")
    finally:
        inst.close()
    folded = [
        e["kind"] for e in events.list_events(central, order_id=any_site.order_id) if e["actor"].startswith("agent:")
    ]
    assert sorted(folded) == ["agent.initialized", "agent.sync_prepared"], folded
