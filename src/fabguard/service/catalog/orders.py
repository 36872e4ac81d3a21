"""Production orders: a quota of units of one product at one site, inside a validity window.

Lowering a quota takes effect at once; raising one is a request that a second, different person
must approve (dual control).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fabguard.domain.errors import Conflict, FabGuardError, Forbidden, InvalidRequest, NotFound
from fabguard.domain.values import OrderId, OrderState, ProductId, SiteId
from fabguard.service.access import people
from fabguard.service.authority.authorities import choose_issuing_ca
from fabguard.service.core.events import record_refusal
from fabguard.service.core.instance import Instance
from fabguard.store.eventlog import append_event
from fabguard.store.models import Event, Order, Product, QuotaChange, Site, Unit

MAX_QUOTA = 100_000_000


@dataclass(frozen=True)
class OrderView:
    id: str
    product_id: str
    site_id: str
    state: str
    quota: int
    used: int
    remaining: int
    valid_from: datetime
    valid_until: datetime | None
    created_at: datetime
    created_by: str
    refused: dict[str, int]
    pending_quota_changes: list[dict[str, object]]
    issuing_ca: str = "issuing"

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "product_id": self.product_id,
            "site_id": self.site_id,
            "state": self.state,
            "quota": self.quota,
            "used": self.used,
            "remaining": self.remaining,
            "valid_from": self.valid_from.isoformat(),
            "valid_until": self.valid_until.isoformat() if self.valid_until else None,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "refused": self.refused,
            "refused_total": sum(self.refused.values()),
            "pending_quota_changes": self.pending_quota_changes,
            "issuing_ca": self.issuing_ca,
        }


def _check_quota(quota: int) -> None:
    if isinstance(quota, bool) or not isinstance(quota, int) or not 0 <= quota <= MAX_QUOTA:
        raise InvalidRequest(f"quota must be a whole number from 0 to {MAX_QUOTA}", code="invalid_quota")


def create_order(
    inst: Instance,
    *,
    product_id: ProductId,
    site_id: SiteId,
    quota: int,
    actor: str,
    order_id: OrderId | None = None,
    valid_from: datetime | None = None,
    valid_until: datetime | None = None,
) -> OrderView:
    _check_quota(quota)
    oid = order_id.value if order_id else f"po-{secrets.token_hex(4)}"
    pid, sid = product_id.value, site_id.value
    now = inst.clock()
    valid_from = valid_from or now
    for t in (valid_from, valid_until):
        if t is not None and t.tzinfo is None:
            raise InvalidRequest("order validity times must carry a time zone", code="invalid_time")
        try:
            if t is not None:
                t.astimezone(UTC)
        except OverflowError:
            raise InvalidRequest(
                "order validity times must lie between years 1 and 9999 in UTC", code="invalid_time"
            ) from None
    if valid_until is not None and valid_until <= valid_from:
        raise InvalidRequest("valid_until must be after valid_from", code="invalid_time")
    try:
        with inst.db.transaction() as s:
            if s.get(Product, pid) is None:
                raise NotFound(f"no product {pid!r}", code="product_not_found")
            if s.get(Site, sid) is None:
                raise NotFound(f"no site {sid!r}", code="site_not_found")
            issuing_ca = choose_issuing_ca(s, pid, sid)
            s.add(
                Order(
                    id=oid,
                    issuing_ca=issuing_ca,
                    product_id=pid,
                    site_id=sid,
                    quota=quota,
                    used=0,
                    state=OrderState.ACTIVE.value,
                    valid_from=valid_from,
                    valid_until=valid_until,
                    created_at=now,
                    created_by=actor,
                )
            )
            s.flush()
            append_event(
                s,
                "order.created",
                at=now,
                actor=actor,
                order_id=oid,
                detail={
                    "product_id": pid,
                    "site_id": sid,
                    "quota": quota,
                    "issuing_ca": issuing_ca,
                    "valid_from": valid_from.isoformat(),
                    "valid_until": valid_until.isoformat() if valid_until else None,
                },
            )
    except IntegrityError:
        raise Conflict(f"order {oid} already exists", code="order_exists") from None
    return get_order(inst, oid)


def _view(s: Session, order: Order) -> OrderView:
    refused = dict(
        s.execute(
            select(Event.code, func.count())
            .where(Event.order_id == order.id, Event.kind == "unit.refused")
            .group_by(Event.code)
        ).all()
    )
    pending = [
        {"id": c.id, "new_quota": c.new_quota, "requested_by": c.requested_by, "reason": c.reason}
        for c in s.execute(
            select(QuotaChange).where(QuotaChange.order_id == order.id, QuotaChange.state == "pending")
        ).scalars()
    ]
    return OrderView(
        id=order.id,
        product_id=order.product_id,
        site_id=order.site_id,
        state=order.state,
        quota=order.quota,
        used=order.used,
        remaining=order.quota - order.used,
        valid_from=order.valid_from,
        valid_until=order.valid_until,
        created_at=order.created_at,
        created_by=order.created_by,
        refused={str(k): int(v) for k, v in sorted(refused.items())},
        pending_quota_changes=pending,
        issuing_ca=order.issuing_ca,
    )


def get_order(inst: Instance, order_id: str) -> OrderView:
    with inst.db.read() as s:
        order = s.get(Order, order_id)
        if order is None:
            raise NotFound(f"no order {order_id!r}", code="order_not_found")
        return _view(s, order)


def issuing_ca_of(inst: Instance, order_id: str) -> str:
    """The name of the CA that signs the order's units."""
    with inst.db.read() as s:
        order = s.get(Order, order_id)
        if order is None:
            raise NotFound(f"no order {order_id!r}", code="order_not_found")
        return order.issuing_ca


def active_order_ids(inst: Instance, site_id: str) -> list[str]:
    """The ids of the site's active orders."""
    with inst.db.read() as s:
        return list(
            s.execute(
                select(Order.id).where(Order.site_id == site_id, Order.state == OrderState.ACTIVE.value)
            ).scalars()
        )


def list_orders(inst: Instance) -> list[OrderView]:
    with inst.db.read() as s:
        return [_view(s, o) for o in s.execute(select(Order).order_by(Order.created_at, Order.id)).scalars()]


def set_order_state(inst: Instance, order_id: str, new_state: OrderState, *, actor: str) -> OrderView:
    """Suspend, resume or close an order. Through the API, resuming a suspended order needs a second
    person (``service/catalog/order_acts.py``); this function is the act itself."""
    with inst.db.transaction() as s:
        change_order_state(s, order_id, new_state, now=inst.clock(), actor=actor)
    return get_order(inst, order_id)


def change_order_state(
    s: Session,
    order_id: str,
    new_state: OrderState,
    *,
    now: datetime,
    actor: str,
    detail: dict[str, object] | None = None,
) -> str:
    """Move an order to ``new_state`` in the caller's transaction (a closed order stays closed); returns
    the state it had."""
    order = s.get(Order, order_id, with_for_update=True)
    if order is None:
        raise NotFound(f"no order {order_id!r}", code="order_not_found")
    if order.state == OrderState.CLOSED.value and new_state is not OrderState.CLOSED:
        raise Conflict(f"order {order_id} is closed and cannot be reopened", code="order_closed")
    old = order.state
    order.state = new_state.value
    append_event(
        s,
        "order.state_changed",
        at=now,
        actor=actor,
        order_id=order_id,
        detail={"from": old, "to": new_state.value, **(detail or {})},
    )
    return old


def request_quota_change(
    inst: Instance, order_id: str, new_quota: int, *, reason: str, actor: str
) -> dict[str, object]:
    """Lower at once; a raise waits for a second approver. Returns the change as a dict."""
    _check_quota(new_quota)
    if not reason or len(reason) > 500 or not reason.isprintable():
        raise InvalidRequest("a quota change needs a reason of 1-500 printable characters", code="invalid_reason")
    now = inst.clock()
    with inst.db.transaction() as s:
        order = s.get(Order, order_id, with_for_update=True)
        if order is None:
            raise NotFound(f"no order {order_id!r}", code="order_not_found")
        if new_quota == order.quota:
            raise InvalidRequest(f"order {order_id} already has quota {new_quota}", code="invalid_quota")
        if new_quota < order.used:
            raise Conflict(
                f"order {order_id} has already used {order.used} units; the quota cannot go below that",
                code="quota_below_used",
            )
        change = QuotaChange(
            order_id=order_id,
            old_quota=order.quota,
            new_quota=new_quota,
            reason=reason,
            requested_by=actor,
            requested_at=now,
            state="pending",
            requester_person=people.acting(s, actor).person_id,
        )
        s.add(change)
        s.flush()
        if new_quota < order.quota:
            change.state, change.decided_by, change.decided_at = "applied", actor, now
            order.quota = new_quota
            append_event(
                s,
                "order.quota_changed",
                at=now,
                actor=actor,
                order_id=order_id,
                detail={"change_id": change.id, "from": change.old_quota, "to": new_quota, "reason": reason},
            )
        else:
            append_event(
                s,
                "order.quota_change_requested",
                at=now,
                actor=actor,
                order_id=order_id,
                detail={"change_id": change.id, "from": change.old_quota, "to": new_quota, "reason": reason},
            )
        return _change_dict(change)


def _change_dict(c: QuotaChange) -> dict[str, object]:
    return {
        "id": c.id,
        "order_id": c.order_id,
        "old_quota": c.old_quota,
        "new_quota": c.new_quota,
        "state": c.state,
        "reason": c.reason,
        "requested_by": c.requested_by,
        "decided_by": c.decided_by,
    }


def decide_quota_change(inst: Instance, change_id: int, *, approve: bool, actor: str) -> dict[str, object]:
    """Approve or reject a pending raise, under the rules of ``service/approvals/requests.py``: not by the person
    who asked (whichever token; ``people.second_person_refusal``), not after ``approval_hours``; a
    refusal is recorded."""
    try:
        return _decide_quota_change(inst, change_id, approve=approve, actor=actor)
    except (Forbidden, Conflict) as exc:
        if exc.code in ("same_approver", "same_person", "approval_expired"):
            raise _refused(inst, exc, actor, change_id) from None
        raise


def _refused(inst: Instance, exc: FabGuardError, actor: str, change_id: int) -> FabGuardError:
    record_refusal(inst, "approval.refused", exc, actor=actor, detail={"quota_change_id": change_id})
    return exc


def _decide_quota_change(inst: Instance, change_id: int, *, approve: bool, actor: str) -> dict[str, object]:
    now = inst.clock()
    with inst.db.transaction() as s:
        change = s.get(QuotaChange, change_id, with_for_update=True)
        if change is None:
            raise NotFound(f"no quota change {change_id}", code="quota_change_not_found")
        if change.state != "pending":
            raise Conflict(f"quota change {change_id} is already {change.state}", code="quota_change_decided")
        decider = people.acting(s, actor)
        refused = people.second_person_refusal(people.acting(s, change.requested_by), decider)
        if refused is not None:
            raise Forbidden(
                "a quota raise needs a second person: the requester cannot approve or reject it, with any token",
                code=refused,
            )
        if change.requested_at + timedelta(hours=inst.limits.approval_hours) <= now:
            raise Conflict(
                f"quota change {change_id} waited past {inst.limits.approval_hours} h; ask again",
                code="approval_expired",
            )
        order = s.get(Order, change.order_id, with_for_update=True)
        assert order is not None
        change.decided_by, change.decided_at = actor, now
        if approve:
            change.state = "applied"
            old, order.quota = order.quota, max(change.new_quota, order.used)
            append_event(
                s,
                "order.quota_changed",
                at=now,
                actor=actor,
                order_id=order.id,
                detail={
                    "change_id": change.id,
                    "from": old,
                    "to": order.quota,
                    "requested_by": change.requested_by,
                    "requester_person": change.requester_person,
                    "person_id": decider.person_id,
                },
            )
        else:
            change.state = "rejected"
            append_event(
                s,
                "order.quota_change_rejected",
                at=now,
                actor=actor,
                order_id=order.id,
                detail={"change_id": change.id},
            )
        return _change_dict(change)


def order_units(inst: Instance, order_id: str, *, after_id: int = 0, limit: int = 100) -> list[dict[str, object]]:
    with inst.db.read() as s:
        if s.get(Order, order_id) is None:
            raise NotFound(f"no order {order_id!r}", code="order_not_found")
        rows = s.execute(
            select(Unit).where(Unit.order_id == order_id, Unit.id > after_id).order_by(Unit.id).limit(limit)
        ).scalars()
        return [
            {
                "id": u.id,
                "serial": u.serial,
                "fixture_id": u.fixture_id,
                "cert_serial": u.cert_serial,
                "issued_at": u.issued_at.isoformat(),
                "attestation": json.loads(u.attestation) if u.attestation else None,
            }
            for u in rows
        ]
