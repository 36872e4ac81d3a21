"""Every event of a full flow names who acted: a token as ``name (token id)``, a fixture as ``fixture:ID``."""

from __future__ import annotations

import httpx
import pytest

from fabguard.fixture.client import FabGuardClientError
from fabguard.service.access import tokens
from fabguard.service.core import events
from tests.support import World, tested_device


def _bearer(world: World, role: str, name: str) -> tuple[httpx.Client, str]:
    made, secret = tokens.create_token(world.inst, name=name, role=role, actor="test")
    client = world.admin()
    client.headers["Authorization"] = f"Bearer {secret}"
    return client, made.actor


def test_every_event_of_a_full_flow_names_the_token_or_fixture_that_acted(world: World) -> None:
    start = events.list_events(world.inst, limit=1_000_000)[-1]["seq"]
    engineer, erin = _bearer(world, "engineer", "erin")
    approver, alex = _bearer(world, "approver", "alex")
    admin, ada = _bearer(world, "admin", "ada")
    with engineer, approver, admin:
        assert (
            admin.post("/api/v1/people", json={"name": "line", "roles": ["operator"], "site_id": "cm-a"}).status_code
            == 201
        )
        assert (
            admin.post(
                "/api/v1/tokens", json={"person": "line", "name": "line", "role": "operator", "site_id": "cm-a"}
            ).status_code
            == 201
        )
        order = engineer.post("/api/v1/orders", json={"product_id": "sensor", "site_id": "cm-a", "quota": 1}).json()[
            "id"
        ]
        change = engineer.post(f"/api/v1/orders/{order}/quota-changes", json={"quota": 2, "reason": "more"}).json()
        assert approver.post(f"/api/v1/quota-changes/{change['id']}/approve").status_code == 200
        fx = world.fixture("fx-1")
        for serial in ("SN-1", "SN-2", "SN-3"):
            device = tested_device(fx, serial)
            if serial != "SN-3":
                fx.provision(order, serial, device.csr_pem())
        with pytest.raises(FabGuardClientError):  # quota exhausted: a refusal event by the fixture
            fx.provision(order, "SN-3", device.csr_pem())
        assert (
            admin.post("/api/v1/units/SN-1/revoke", json={"reason": "key_compromise", "note": "leaked"}).status_code
            == 200
        )
    flow = [e for e in events.list_events(world.inst, after=start, limit=1_000_000)]
    assert len(flow) >= 10
    by_kind: dict[str, set[str]] = {}
    for e in flow:
        assert e["actor"], e
        by_kind.setdefault(e["kind"], set()).add(e["actor"])
    assert by_kind["token.created"] >= {ada}
    assert by_kind["order.created"] == {erin}
    assert by_kind["order.quota_change_requested"] == {erin} and alex in by_kind["order.quota_changed"]
    fixture_kinds = {k for k, actors in by_kind.items() if actors == {"fixture:fx-1"}}
    assert {"fixture.enrolled", "unit.provisioned", "unit.refused"} <= fixture_kinds, by_kind
    token_ids = {t.id for t in tokens.list_tokens(world.inst)}
    for e in flow:
        actor = e["actor"]
        assert actor == "test" or actor.startswith("fixture:") or actor.rsplit("(", 1)[-1].rstrip(")") in token_ids, e
