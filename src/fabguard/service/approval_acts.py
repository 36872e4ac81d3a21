"""What each kind of dual-control request does: checked when asked for, applied when a second person
approves it, in the approval's own transaction (so an act runs exactly once, or not at all).

The mechanism (who may approve, expiry, the ledger) is ``service/approvals.py``; quota raises
(``service/orders.py``) and firmware releases (``service/firmware.py``) keep their own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from fabguard.domain.errors import Conflict, NotFound
from fabguard.domain.values import OrderState, Role
from fabguard.service import orders, tokens
from fabguard.store.models import Order


@dataclass(frozen=True, slots=True)
class Approved:
    """An approved request, as its act sees it."""

    id: int
    target: str
    parameters: Mapping[str, Any]
    secret_sha256: str | None
    now: datetime
    actor: str  # the approver
    requested_by: str

    @property
    def detail(self) -> dict[str, object]:
        """What the act's own event adds: which request, and who asked for it."""
        return {"approval_id": self.id, "requested_by": self.requested_by}


@dataclass(frozen=True, slots=True)
class Act:
    """One kind of act under dual control."""

    summary: str
    # Refuses a request that could not be carried out (run when it is made, in its transaction).
    check: Callable[[Session, str, Mapping[str, Any]], None]
    # Carries it out in the approval's transaction; returns what it did (kept on the request).
    apply: Callable[[Session, Approved], dict[str, object]]


def _no_check(s: Session, target: str, parameters: Mapping[str, Any]) -> None:
    del s, target, parameters


def _issue_admin_token(s: Session, a: Approved) -> dict[str, object]:
    if a.secret_sha256 is None:
        raise ValueError(f"approval {a.id} carries no token hash")
    spec = tokens.TokenSpec(
        name=str(a.parameters["name"]),
        role=Role(a.parameters["role"]),
        site_id=None,
        lifetime=timedelta(seconds=int(a.parameters["lifetime_seconds"])),
    )
    made = tokens.insert_token(s, spec, a.secret_sha256, now=a.now, actor=a.actor, detail=a.detail)
    return {"token_id": made.id, "expires_at": made.expires_at.isoformat() if made.expires_at else None}


def _order_is_suspended(s: Session, target: str, parameters: Mapping[str, Any]) -> None:
    del parameters
    order = s.get(Order, target)
    if order is None:
        raise NotFound(f"no order {target!r}", code="order_not_found")
    if order.state != OrderState.SUSPENDED.value:
        raise Conflict(f"order {target} is {order.state}, not suspended", code="order_not_suspended")


def _activate_order(s: Session, a: Approved) -> dict[str, object]:
    old = orders.change_order_state(s, a.target, OrderState.ACTIVE, now=a.now, actor=a.actor, detail=a.detail)
    return {"order_id": a.target, "from": old, "to": OrderState.ACTIVE.value}


ADMIN_TOKEN = "token.admin"
ORDER_ACTIVATION = "order.activate"

ACTS: Mapping[str, Act] = {
    ADMIN_TOKEN: Act("issue an admin token", _no_check, _issue_admin_token),
    ORDER_ACTIVATION: Act("resume a suspended order", _order_is_suspended, _activate_order),
}

__all__ = ["ACTS", "ADMIN_TOKEN", "ORDER_ACTIVATION", "Act", "Approved"]
