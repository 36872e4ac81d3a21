"""Resuming a suspended order is two people's: one asks (``OrderActivation``), a second approves, and the
order provisions again from the approval's transaction (``service/approvals/``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from fabguard.domain.errors import Conflict, NotFound
from fabguard.domain.values import OrderState
from fabguard.service.approvals.registry import Approved, register
from fabguard.service.catalog import orders
from fabguard.service.core.instance import Instance
from fabguard.store.models import Order

ORDER_ACTIVATION = "order.activate"


@dataclass(frozen=True, slots=True)
class OrderActivation:
    """A suspended order (the request's target) made active again."""

    def to_json(self) -> dict[str, Any]:
        return {"state": OrderState.ACTIVE.value}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OrderActivation:
        del data  # the state it moves to is always active
        return cls()


def _order_is_suspended(inst: Instance, s: Session, target: str, parameters: OrderActivation) -> None:
    del inst, parameters
    order = s.get(Order, target)
    if order is None:
        raise NotFound(f"no order {target!r}", code="order_not_found")
    if order.state != OrderState.SUSPENDED.value:
        raise Conflict(f"order {target} is {order.state}, not suspended", code="order_not_suspended")


def _activate_order(inst: Instance, s: Session, a: Approved[OrderActivation]) -> dict[str, object]:
    del inst
    old = orders.change_order_state(s, a.target, OrderState.ACTIVE, now=a.now, actor=a.actor, detail=a.detail)
    return {"order_id": a.target, "from": old, "to": OrderState.ACTIVE.value}


register(
    ORDER_ACTIVATION,
    OrderActivation,
    summary="resume a suspended order",
    check=_order_is_suspended,
    apply=_activate_order,
)

__all__ = ["ORDER_ACTIVATION", "OrderActivation"]
