"""Dual control means two people, not two tokens (issue 23): the attacks, through the HTTP API, on both
engines. The same person is the same person record, whichever token or name."""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx
from sqlalchemy import select

from fabguard.service.access import tokens
from fabguard.service.catalog import orders
from fabguard.service.core import events
from fabguard.store.models import Event
from tests.support import World


def _as(world: World, secret: str) -> httpx.Client:
    client = world.admin()
    client.headers["Authorization"] = f"Bearer {secret}"
    return client


def _code(response: httpx.Response) -> tuple[int, str | None]:
    body = response.json()
    return response.status_code, body.get("error", {}).get("code") if isinstance(body, dict) else None


def _second_approver(world: World, admin: httpx.Client, name: str = "alex") -> str:
    """The bootstrap: the first admin brings in a second approving person alone; their token's secret."""
    added = admin.post("/api/v1/people", json={"name": name, "roles": ["approver"], "contact": f"{name}@acme.test"})
    assert added.status_code == 201 and added.json()["pending_approval"] is None, added.text
    made = admin.post("/api/v1/tokens", json={"person": name, "role": "approver"})
    assert made.status_code == 201, made.text
    return str(made.json()["token"])


def _events(world: World, kind: str) -> list[dict[str, Any]]:
    return [e for e in events.list_events(world.inst, limit=1_000_000) if e["kind"] == kind]


def test_an_admin_cannot_approve_their_own_admin_token_with_an_approver_token_minted_for_themself(
    any_world: World,
) -> None:
    with any_world.admin() as admin:
        alex = _second_approver(any_world, admin)  # a real second person exists: dual control is in force
        asked = admin.post("/api/v1/tokens", json={"person": "admin", "name": "root-2", "role": "admin"})
        assert asked.status_code == 202, asked.text
        # An approver token for themself under another name is one person's act (it adds no person)...
        minted = admin.post("/api/v1/tokens", json={"person": "admin", "name": "someone-else", "role": "approver"})
        assert minted.status_code == 201, minted.text
        with _as(any_world, minted.json()["token"]) as other_token:
            decided = other_token.post(f"/api/v1/approvals/{asked.json()['id']}/approve")
        # ...and it is still the requester's person: refused, recorded, and the admin token never works.
        assert _code(decided) == (403, "same_person"), decided.text
        assert (
            any_world.admin()
            .get("/api/v1/orders", headers={"Authorization": f"Bearer {asked.json()['token']}"})
            .status_code
            == 401
        )
        refused = _events(any_world, "approval.refused")
        assert [(e["actor"], e["code"]) for e in refused] == [(f"someone-else ({minted.json()['id']})", "same_person")]
        # An approver token for someone else is two people's act now: it waits for a second person.
        for_alex = admin.post("/api/v1/tokens", json={"person": "alex", "name": "alex-2", "role": "approver"})
        assert for_alex.status_code == 202 and for_alex.json()["kind"] == "token.approver", for_alex.text
        with _as(any_world, alex) as second:
            assert second.post(f"/api/v1/approvals/{asked.json()['id']}/approve").status_code == 200


def test_a_quota_raise_is_not_approved_by_its_requesters_other_token_nor_by_who_made_their_token(
    any_world: World,
) -> None:
    order = any_world.order(quota=5)
    with any_world.admin() as admin:
        alex = _second_approver(any_world, admin)
        # The attack: the admin asks for the raise, then approves it with an approver token of their own.
        raised = admin.post(f"/api/v1/orders/{order}/quota-changes", json={"quota": 50, "reason": "more"}).json()
        minted = admin.post("/api/v1/tokens", json={"person": "admin", "name": "bob", "role": "approver"}).json()
        with _as(any_world, minted["token"]) as other_token:
            assert _code(other_token.post(f"/api/v1/quota-changes/{raised['id']}/approve")) == (403, "same_person")
        # The same attack the other way round: a token made for an engineer, who is someone else, is
        # still its maker's to use: its maker cannot be the second signature on what it asked for.
        assert admin.post("/api/v1/people", json={"name": "erin", "roles": ["engineer"]}).status_code == 201
        erin = admin.post("/api/v1/tokens", json={"person": "erin", "role": "engineer"}).json()
        with _as(any_world, erin["token"]) as as_erin:
            by_erin = as_erin.post(f"/api/v1/orders/{order}/quota-changes", json={"quota": 60, "reason": "x"}).json()
        assert _code(admin.post(f"/api/v1/quota-changes/{by_erin['id']}/approve")) == (403, "same_person")
        assert orders.get_order(any_world.inst, order).quota == 5
        with _as(any_world, alex) as second:
            assert second.post(f"/api/v1/quota-changes/{raised['id']}/approve").status_code == 200
        assert orders.get_order(any_world.inst, order).quota == 50
    changed = _events(any_world, "order.quota_changed")[-1]["detail"]
    assert changed["requester_person"] != changed["person_id"] and changed["person_id"] is not None


def test_two_people_whose_tokens_share_a_name_are_two_people(any_world: World) -> None:
    order = any_world.order(quota=5)
    with any_world.admin() as admin:
        alex = _second_approver(any_world, admin)
        assert admin.post("/api/v1/people", json={"name": "sam", "roles": ["engineer"]}).status_code == 201
        # sam's token is labelled "alex" too: names are labels, people are records.
        sams = admin.post("/api/v1/tokens", json={"person": "sam", "name": "alex", "role": "engineer"}).json()
    with _as(any_world, sams["token"]) as sam:
        raised = sam.post(f"/api/v1/orders/{order}/quota-changes", json={"quota": 9, "reason": "more"}).json()
    with _as(any_world, alex) as second:
        assert second.post(f"/api/v1/quota-changes/{raised['id']}/approve").status_code == 200
    assert orders.get_order(any_world.inst, order).quota == 9


def test_granting_approver_is_two_peoples_act_once_two_people_have_approving_tokens(any_world: World) -> None:
    with any_world.admin() as admin:
        alex = _second_approver(any_world, admin)
        bootstrap = [e for e in _events(any_world, "person.created") if e["detail"]["name"] == "alex"]
        assert bootstrap[0]["detail"]["second_person"] is False and "bootstrap" in bootstrap[0]["detail"]["why"]
        assert admin.post("/api/v1/people", json={"name": "mallory", "roles": ["engineer"]}).status_code == 201
        # A token may carry only a role its person holds.
        refused = admin.post("/api/v1/tokens", json={"person": "mallory", "role": "approver"})
        assert _code(refused) == (409, "person_lacks_role")
        granted = admin.post("/api/v1/people/mallory/grant", json={"role": "approver"})
        assert granted.status_code == 202 and granted.json()["roles"] == ["engineer"], granted.text
        request = granted.json()["pending_approval"]
        assert request["kind"] == "person.grant" and request["parameters"]["roles"] == ["approver"]
        assert _code(admin.post(f"/api/v1/approvals/{request['id']}/approve")) == (403, "same_approver")
        with _as(any_world, alex) as second:
            done = second.post(f"/api/v1/approvals/{request['id']}/approve")
        assert done.status_code == 200, done.text
        assert admin.get("/api/v1/people/mallory").json()["roles"] == ["engineer", "approver"]
    granted_event = _events(any_world, "person.granted")[-1]
    assert granted_event["detail"]["approval_id"] == request["id"] and granted_event["actor"].startswith("alex")


def test_two_different_people_approving_at_once_grant_once(any_world: World) -> None:
    with any_world.admin() as admin:
        approvers = [_second_approver(any_world, admin, "alex")]
        # bea comes in while dual control is in force already (alex's token made it so): her role waits.
        bea = admin.post("/api/v1/people", json={"name": "bea", "roles": ["approver"]})
        assert bea.status_code == 202 and bea.json()["roles"] == []
        bea_grant = bea.json()["pending_approval"]
        with _as(any_world, approvers[0]) as alex:
            assert alex.post(f"/api/v1/approvals/{bea_grant['id']}/approve").status_code == 200
        beas_token = admin.post("/api/v1/tokens", json={"person": "bea", "role": "approver"})
        assert beas_token.status_code == 202  # an approving token for someone else: a second person too
        with _as(any_world, approvers[0]) as alex:
            approved = alex.post(f"/api/v1/approvals/{beas_token.json()['id']}/approve")
        assert approved.status_code == 200, approved.text
        approvers.append(beas_token.json()["token"])
        assert admin.post("/api/v1/people", json={"name": "carl", "roles": ["auditor"]}).status_code == 201
        asked = admin.post("/api/v1/people/carl/grant", json={"role": "admin"}).json()["pending_approval"]
    start = threading.Barrier(2)
    answers: list[tuple[int, str | None]] = []

    def approve(secret: str) -> None:
        with _as(any_world, secret) as client:
            start.wait()
            response = client.post(f"/api/v1/approvals/{asked['id']}/approve")
            answers.append((response.status_code, None) if response.status_code == 200 else _code(response))

    threads = [threading.Thread(target=approve, args=(s,)) for s in approvers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(answers, key=str) == [(200, None), (409, "approval_decided")]
    with any_world.inst.db.read() as s:
        grants = [
            json.loads(e.detail)
            for e in s.execute(select(Event).where(Event.kind == "person.granted")).scalars()
            if json.loads(e.detail).get("approval_id") == asked["id"]
        ]
    assert len(grants) == 1 and grants[0]["roles"] == ["admin"]


def test_a_suspended_persons_tokens_and_a_revoked_roles_tokens_are_refused(any_world: World) -> None:
    with any_world.admin() as admin:
        assert admin.post("/api/v1/people", json={"name": "erin", "roles": ["engineer", "auditor"]}).status_code == 201
        engineer = admin.post("/api/v1/tokens", json={"person": "erin", "role": "engineer"}).json()
        auditor = admin.post("/api/v1/tokens", json={"person": "erin", "name": "erin-ro", "role": "auditor"}).json()
        with _as(any_world, engineer["token"]) as as_erin:
            assert as_erin.get("/api/v1/orders").status_code == 200
        assert admin.post("/api/v1/people/erin/revoke", json={"role": "engineer"}).status_code == 200
        with _as(any_world, engineer["token"]) as as_erin:
            assert _code(as_erin.get("/api/v1/orders")) == (401, "unauthorized")
        with _as(any_world, auditor["token"]) as as_erin:
            assert as_erin.get("/api/v1/orders").status_code == 200
        assert admin.post("/api/v1/people/erin/suspend", json={"reason": "left the company"}).status_code == 200
        with _as(any_world, auditor["token"]) as as_erin:
            refused = as_erin.get("/api/v1/orders")
        assert _code(refused) == (401, "unauthorized") and "suspended" in refused.json()["error"]["message"]
        assert _code(admin.post("/api/v1/tokens", json={"person": "erin", "role": "auditor"})) == (
            409,
            "person_suspended",
        )
    actors = [e["actor"] for e in _events(any_world, "auth.refused")]
    assert f"token:{engineer['id']} (role revoked)" in actors and f"token:{auditor['id']} (suspended)" in actors
    assert tokens.list_tokens(any_world.inst)  # nothing was deleted
