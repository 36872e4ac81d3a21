"""Dual control through one mechanism (service/approvals/requests.py): admin tokens and resuming orders, on both
engines. One person cannot do either alone; a request expires; two approvers at once run the act once."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select

from fabguard.api.app import create_app
from fabguard.domain.errors import Conflict, FabGuardError, Forbidden, Unauthorized
from fabguard.domain.values import OrderId, OrderState, ProductId, Role, SiteId
from fabguard.service.access import tokens
from fabguard.service.approvals import person_acts, requests
from fabguard.service.catalog import orders, product_catalog
from fabguard.service.catalog.order_acts import OrderActivation
from fabguard.service.core.instance import Instance
from fabguard.store.models import ApiToken, Event

ORDER = "po-dc"


def _person(inst: Instance, name: str, role: str) -> tuple[tokens.Principal, str]:
    return tokens.create_token(inst, name=name, role=role, actor="test")


def _events(inst: Instance, kinds: tuple[str, ...]) -> list[Event]:
    with inst.db.read() as s:
        return list(s.execute(select(Event).where(Event.kind.in_(kinds)).order_by(Event.seq)).scalars())


def _suspended_order(inst: Instance) -> None:
    product_catalog.create_product(inst, product_id=ProductId("sensor"), name="Sensor", actor="test")
    product_catalog.create_site(inst, site_id=SiteId("cm-a"), name="CM A", actor="test")
    orders.create_order(
        inst, order_id=OrderId(ORDER), product_id=ProductId("sensor"), site_id=SiteId("cm-a"), quota=3, actor="test"
    )
    orders.set_order_state(inst, ORDER, OrderState.SUSPENDED, actor="test")


class _Http:
    """Requests straight into the ASGI app (no server, no background workers)."""

    def __init__(self, inst: Instance) -> None:
        self.app = create_app(inst)

    def _send(self, method: str, path: str, **kw: object) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
                return await client.request(method, path, **kw)  # type: ignore[arg-type]

        return asyncio.run(go())

    def get(self, path: str, **kw: object) -> httpx.Response:
        return self._send("GET", path, **kw)

    def post(self, path: str, **kw: object) -> httpx.Response:
        return self._send("POST", path, **kw)


def _ask_admin_token(inst: Instance, by: tokens.Principal) -> tuple[requests.ApprovalView, str]:
    """``by`` asks for an admin token for themself (named ``new-admin``)."""
    assert by.person_id is not None
    spec = tokens.token_spec("new-admin", Role.ADMIN)
    pending, secret = person_acts.issue_token(inst, spec, by.person_id, by=requests.Person.of(by))
    assert isinstance(pending, requests.ApprovalView)
    return pending, secret


def test_an_admin_token_works_only_once_a_second_person_approves_it(any_instance: Instance) -> None:
    ada, _ = _person(any_instance, "ada", "admin")
    alex, _ = _person(any_instance, "alex", "approver")
    pending, secret = _ask_admin_token(any_instance, ada)
    assert pending.state == "pending" and pending.requested_by == ada.actor
    with pytest.raises(Unauthorized):
        tokens.authenticate_token(any_instance, secret)
    # The requester cannot approve, whatever other role they hold.
    with pytest.raises(Forbidden) as refused:
        requests.decide(any_instance, pending.id, approve=True, by=ada)
    assert refused.value.code == "same_approver"
    done = requests.decide(any_instance, pending.id, approve=True, by=alex)
    assert done.state == "approved" and done.decided_by == alex.actor
    holder = tokens.authenticate_token(any_instance, secret)
    assert (
        holder.role is Role.ADMIN
        and holder.name == "new-admin"
        and done.result
        == {
            "token_id": holder.id,
            "person_id": ada.person_id,
            "expires_at": holder.expires_at.isoformat() if holder.expires_at else None,
        }
    )
    # The ledger: who asked, who refused themselves, who approved, and the act naming both.
    kinds = ("approval.requested", "approval.refused", "approval.approved", "token.created")
    got = [
        (e.kind, e.actor, e.code)
        for e in _events(any_instance, kinds)
        if e.kind != "token.created" or "new-admin" in e.detail
    ]
    assert got == [
        ("approval.requested", ada.actor, None),
        ("approval.refused", ada.actor, "same_approver"),
        ("approval.approved", alex.actor, None),
        ("token.created", alex.actor, None),
    ]
    created = json.loads(_events(any_instance, ("token.created",))[-1].detail)
    assert created["requested_by"] == ada.actor and created["approval_id"] == pending.id
    with any_instance.db.read() as s:  # the secret itself is stored nowhere
        assert secret not in " ".join(e.detail for e in s.execute(select(Event)).scalars())


def test_a_second_token_of_the_requesters_person_cannot_approve(any_instance: Instance) -> None:
    ada, _ = _person(any_instance, "ada", "admin")
    ada_too, _ = _person(any_instance, "ada", "approver")  # another token id, the same person
    assert ada_too.person_id == ada.person_id
    pending, secret = _ask_admin_token(any_instance, ada)
    with pytest.raises(Forbidden) as refused:
        requests.decide(any_instance, pending.id, approve=True, by=ada_too)
    assert refused.value.code == "same_person"
    with pytest.raises(Unauthorized):
        tokens.authenticate_token(any_instance, secret)


def test_an_expired_request_is_refused_and_its_act_never_happens(any_instance: Instance) -> None:
    _suspended_order(any_instance)
    erin, _ = _person(any_instance, "erin", "engineer")
    alex, _ = _person(any_instance, "alex", "approver")
    pending = requests.request(any_instance, OrderId(ORDER).value, OrderActivation(), by=requests.Person.of(erin))
    real = any_instance.clock
    any_instance.clock = lambda: real() + timedelta(hours=any_instance.limits.approval_hours, seconds=1)
    assert requests.get_approval(any_instance, pending.id).state == "expired"
    assert requests.list_approvals(any_instance) == []
    with pytest.raises(Conflict) as refused:
        requests.decide(any_instance, pending.id, approve=True, by=alex)
    assert refused.value.code == "approval_expired"
    assert orders.get_order(any_instance, ORDER).state == "suspended"
    assert [e.actor for e in _events(any_instance, ("approval.refused",))] == [alex.actor]


def test_a_rejected_request_changes_nothing_and_cannot_be_approved_after(any_instance: Instance) -> None:
    _suspended_order(any_instance)
    erin, _ = _person(any_instance, "erin", "engineer")
    alex, _ = _person(any_instance, "alex", "approver")
    pending = requests.request(any_instance, OrderId(ORDER).value, OrderActivation(), by=requests.Person.of(erin))
    assert [a.id for a in requests.list_approvals(any_instance)] == [pending.id]
    rejected = requests.decide(any_instance, pending.id, approve=False, by=alex)
    assert rejected.state == "rejected" and rejected.result is None
    assert orders.get_order(any_instance, ORDER).state == "suspended"
    with pytest.raises(Conflict) as again:
        requests.decide(any_instance, pending.id, approve=True, by=alex)
    assert again.value.code == "approval_decided"
    assert orders.get_order(any_instance, ORDER).state == "suspended"
    assert [(e.kind, e.actor) for e in _events(any_instance, ("approval.requested", "approval.rejected"))] == [
        ("approval.requested", erin.actor),
        ("approval.rejected", alex.actor),
    ]


def test_an_engineer_cannot_approve_and_a_missing_request_is_not_found(any_instance: Instance) -> None:
    _suspended_order(any_instance)
    erin, _ = _person(any_instance, "erin", "engineer")
    eve, _ = _person(any_instance, "eve", "engineer")
    alex, _ = _person(any_instance, "alex", "approver")
    pending = requests.request(any_instance, OrderId(ORDER).value, OrderActivation(), by=requests.Person.of(erin))
    with pytest.raises(Forbidden) as refused:
        requests.decide(any_instance, pending.id, approve=True, by=eve)
    assert refused.value.code == "forbidden"
    with pytest.raises(FabGuardError) as missing:
        requests.decide(any_instance, 999_999, approve=True, by=alex)
    assert missing.value.code == "approval_not_found"
    assert orders.get_order(any_instance, ORDER).state == "suspended"


def test_two_approvers_at_once_run_the_act_exactly_once(any_instance: Instance) -> None:
    ada, _ = _person(any_instance, "ada", "admin")
    approvers = [_person(any_instance, f"approver-{i}", "approver")[0] for i in range(4)]
    pending, secret = _ask_admin_token(any_instance, ada)
    start = threading.Barrier(len(approvers))
    outcomes: list[str] = []

    def approve(p: tokens.Principal) -> None:
        start.wait()
        try:
            requests.decide(any_instance, pending.id, approve=True, by=p)
            outcomes.append("approved")
        except FabGuardError as exc:
            outcomes.append(exc.code)

    threads = [threading.Thread(target=approve, args=(p,)) for p in approvers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["approval_decided"] * 3 + ["approved"]
    with any_instance.db.read() as s:
        made = s.execute(select(ApiToken).where(ApiToken.name == "new-admin")).scalars().all()
    assert len(made) == 1 and tokens.authenticate_token(any_instance, secret).id == made[0].id
    assert len(_events(any_instance, ("approval.approved",))) == 1


def test_through_the_api_neither_act_is_one_persons(any_instance: Instance) -> None:
    _suspended_order(any_instance)
    _, ada = _person(any_instance, "ada", "admin")
    _, erin = _person(any_instance, "erin", "engineer")
    _, alex = _person(any_instance, "alex", "approver")
    http = _Http(any_instance)

    def as_(secret: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {secret}"}

    asked = http.post("/api/v1/tokens", json={"person": "ada", "name": "root-2", "role": "admin"}, headers=as_(ada))
    assert asked.status_code == 202 and asked.json()["state"] == "pending"
    new_admin = asked.json()["token"]
    assert http.get("/api/v1/orders", headers=as_(new_admin)).status_code == 401
    assert http.post(f"/api/v1/approvals/{asked.json()['id']}/approve", headers=as_(ada)).json()["error"]["code"] == (
        "same_approver"
    )
    audrey = http.post("/api/v1/people", json={"name": "audrey", "roles": ["auditor"]}, headers=as_(ada))
    assert audrey.status_code == 201, audrey.text
    made = http.post("/api/v1/tokens", json={"person": "audrey", "role": "auditor"}, headers=as_(ada))
    assert made.status_code == 201 and made.json()["name"] == "audrey"

    resumed = http.post(f"/api/v1/orders/{ORDER}/state", json={"state": "active"}, headers=as_(erin))
    assert resumed.status_code == 202 and resumed.json()["kind"] == "order.activate"
    assert orders.get_order(any_instance, ORDER).state == "suspended"
    assert http.post(f"/api/v1/approvals/{resumed.json()['id']}/approve", headers=as_(erin)).status_code == 403
    listed = http.get("/api/v1/approvals", headers=as_(alex)).json()
    assert [a["id"] for a in listed] == [asked.json()["id"], resumed.json()["id"]]
    assert all("token" not in a and "secret_sha256" not in a for a in listed)

    for approval in (asked.json(), resumed.json()):
        done = http.post(f"/api/v1/approvals/{approval['id']}/approve", headers=as_(alex))
        assert done.status_code == 200 and done.json()["state"] == "approved"
    assert orders.get_order(any_instance, ORDER).state == "active"
    assert http.get("/api/v1/orders", headers=as_(new_admin)).status_code == 200
    # Suspending stays one person's, and an active order is not "resumed" again.
    assert http.post(f"/api/v1/orders/{ORDER}/state", json={"state": "suspended"}, headers=as_(erin)).status_code == 200
    with pytest.raises(Conflict) as active:
        orders.set_order_state(any_instance, ORDER, OrderState.ACTIVE, actor="t")
        requests.request(any_instance, OrderId(ORDER).value, OrderActivation(), by=requests.Person("t", "t", None))
    assert active.value.code == "order_not_suspended"
