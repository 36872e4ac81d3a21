"""The acts under dual control as their slices register them: typed parameters that keep the JSON shape
requests were always stored (and recorded) in, every kind registered wherever requests are decided, and
a request stored before the parameters were typed still approved."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select

from fabguard.domain.values import OrderState
from fabguard.service.access import tokens
from fabguard.service.agent import lease_acts, quota_leases
from fabguard.service.agent.site_agent import prepare_agent
from fabguard.service.approvals import person_acts, requests
from fabguard.service.approvals.registry import act_of, register, registered_kinds
from fabguard.service.authority import ca_acts
from fabguard.service.catalog import order_acts, orders
from fabguard.service.core.instance import Instance
from fabguard.service.royalties import licence_acts
from fabguard.store.approval_models import ApprovalRequest
from fabguard.store.models import Event
from tests.support import World, second_person_approves

# Every kind a request was ever stored under, with its parameters as the code before typed parameters
# wrote them (``json.dumps(parameters, sort_keys=True)``, and the ``approval.requested`` event's detail).
OLD_SHAPES: dict[str, dict[str, Any]] = {
    person_acts.ADMIN_TOKEN: {
        "name": "root-2",
        "role": "admin",
        "site_id": None,
        "lifetime_seconds": 3600,
        "person_id": "p-1",
    },
    person_acts.APPROVER_TOKEN: {
        "name": "alex-2",
        "role": "approver",
        "site_id": None,
        "lifetime_seconds": 60,
        "person_id": "p-2",
    },
    person_acts.PERSON_GRANT: {"roles": ["admin", "approver"], "site_id": None},
    order_acts.ORDER_ACTIVATION: {"state": "active"},
    ca_acts.CA_CREATION: {"site_id": "cm-a", "product_id": None},
    ca_acts.MATTER_PAI_CREATION: {"product_id": "bulb", "vid": 0xFFF1, "pid": None},
    ca_acts.CA_IMPORT: {"certificate": "-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n"},
    ca_acts.CA_ROTATION: {"new_name": "issuing-2027"},
    ca_acts.CA_REVOCATION: {"reason": "ca_compromise", "note": "leak"},
}

# Acts added since, in the shape they are stored in.
NEW_SHAPES: dict[str, dict[str, Any]] = {
    licence_acts.LICENCE_SIGNER_REVOCATION: {"generation": 1, "reason": "key_compromise", "note": "leaked"},
}


def test_every_old_shape_names_a_registered_kind() -> None:
    assert registered_kinds() == {*OLD_SHAPES, *NEW_SHAPES, lease_acts.LEASE_ISSUE}


@pytest.mark.parametrize("kind", sorted({*OLD_SHAPES, *NEW_SHAPES}))
def test_parameters_read_and_write_the_shape_requests_are_stored_in(kind: str) -> None:
    stored = {**OLD_SHAPES, **NEW_SHAPES}[kind]
    act = act_of(kind)
    parameters = act.load(json.dumps(stored, sort_keys=True))
    assert isinstance(parameters, act.parameters)
    assert parameters.to_json() == stored


def test_a_token_request_from_before_people_keeps_its_shape() -> None:
    before_0017 = {"name": "root-2", "role": "admin", "site_id": None, "lifetime_seconds": 3600}
    parameters = act_of(person_acts.ADMIN_TOKEN).load(before_0017)
    assert parameters.person_id is None and parameters.to_json() == before_0017


def test_a_lease_request_keeps_the_agent_request_as_it_was_sent(tmp_path: Path) -> None:
    text = prepare_agent(tmp_path / "agent", site_id="cm-a")
    stored = {"units": 2, "expires_in_seconds": 3600, "request": text}
    parameters = act_of(lease_acts.LEASE_ISSUE).load(stored)
    assert parameters.request.site_id == "cm-a" and parameters.expires_in == timedelta(hours=1)
    assert parameters.to_json() == stored


def test_a_kind_or_parameters_type_is_registered_once() -> None:
    with pytest.raises(ValueError, match="registered already"):
        register(
            order_acts.ORDER_ACTIVATION,
            order_acts.OrderActivation,
            summary="again",
            check=lambda *_: None,
            apply=lambda *_: {},
        )


@pytest.mark.parametrize("module", ["fabguard.api.app", "fabguard.cli.main"])
def test_the_api_and_the_cli_can_decide_every_kind(module: str) -> None:
    """In a process of its own: what importing the API (or the CLI) registers, and nothing a test imported."""
    probe = (
        f"import {module}\n"
        "from fabguard.service.approvals.registry import registered_kinds\n"
        "print(','.join(sorted(registered_kinds())))"
    )
    src = Path(requests.__file__).parents[3]
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env={"PYTHONPATH": str(src)}
    )
    assert set(out.stdout.strip().split(",")) == {*OLD_SHAPES, *NEW_SHAPES, lease_acts.LEASE_ISSUE}


def _old_row(inst: Instance, kind: str, target: str, parameters: dict[str, Any], by: tokens.Principal) -> int:
    """A pending request written as the code before typed parameters wrote it."""
    now = inst.clock()
    with inst.db.transaction() as s:
        return int(
            s.execute(
                insert(ApprovalRequest).values(
                    kind=kind,
                    target=target,
                    parameters=json.dumps(parameters, sort_keys=True),
                    requested_by=by.actor,
                    requester_name=by.name,
                    requester_token=by.id,
                    requester_person=by.person_id,
                    requested_at=now,
                    expires_at=now + timedelta(hours=1),
                    state="pending",
                )
            ).inserted_primary_key[0]
        )


def test_a_pending_order_activation_stored_in_the_old_shape_is_approved(any_world: World) -> None:
    inst = any_world.inst
    order = any_world.order(3)
    orders.set_order_state(inst, order, OrderState.SUSPENDED, actor="test")
    erin, _ = tokens.create_token(inst, name="erin", role="engineer", actor="test")
    pending = requests.get_approval(inst, _old_row(inst, "order.activate", order, {"state": "active"}, erin))
    assert pending.summary == "resume a suspended order"
    assert second_person_approves(inst, pending) == {"order_id": order, "from": "suspended", "to": "active"}
    assert orders.get_order(inst, order).state == "active"


def test_a_pending_lease_stored_in_the_old_shape_is_approved(world: World, tmp_path: Path) -> None:
    inst = world.inst
    world.credentials("line-1")
    order = world.order(10)
    text = prepare_agent(tmp_path / "agent", site_id="cm-a")
    erin, _ = tokens.create_token(inst, name="erin", role="admin", actor="test")
    old = {"units": 2, "expires_in_seconds": 3600, "request": text}
    pending = requests.get_approval(inst, _old_row(inst, "lease.issue", order, old, erin))
    done = second_person_approves(inst, pending)
    assert (done["order_id"], done["units"]) == (order, 2)
    bundle = quota_leases.lease_bundle(inst, str(done["lease_id"]))
    assert bundle["lease"]["units"] == 2  # type: ignore[index]
    assert datetime.fromisoformat(str(done["not_after"])) <= datetime.now(UTC) + timedelta(hours=1)


def test_a_lease_asked_for_through_the_api_records_the_agent_request_as_sent(world: World, tmp_path: Path) -> None:
    order = world.order(10)
    agent_request = json.loads(prepare_agent(tmp_path / "agent", site_id="cm-a"))
    with world.admin() as http:
        r = http.post(
            f"/api/v1/orders/{order}/leases",
            json={"units": 2, "expires_in_minutes": 60, "agent_request": agent_request},
        )
    assert r.status_code == 202, r.text
    expected = {"units": 2, "expires_in_seconds": 3600, "request": json.dumps(agent_request)}
    assert r.json()["parameters"] == expected
    with world.inst.db.read() as s:
        asked = s.execute(select(Event.detail).where(Event.kind == "approval.requested")).scalar_one()
    assert json.loads(asked)["parameters"] == expected


def test_a_bad_agent_request_is_refused_at_the_edge_and_records_nothing(world: World) -> None:
    order = world.order(10)
    with world.admin() as http:
        r = http.post(
            f"/api/v1/orders/{order}/leases",
            json={"units": 2, "expires_in_minutes": 60, "agent_request": {"site_id": "cm-a"}},
        )
    assert r.status_code == 422 and r.json()["error"]["code"] == "agent_request_invalid"
    assert r.json()["error"]["message"] == "not an agent request: 'hostnames'"
    assert requests.list_approvals(world.inst) == []
