"""Production orders and their quota changes (dual control for raises)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from fabguard.api.deps import Approver, ChangeId, Count, Engineer, Inst, SiteReader, visible_order
from fabguard.api.responses.authority import Approval
from fabguard.api.responses.orders import Order, OrderUnit, QuotaChange
from fabguard.api.schemas import OrderIn, OrderStateIn, QuotaChangeIn
from fabguard.domain.values import OrderId, OrderState, ProductId, SiteId
from fabguard.service.approvals import requests
from fabguard.service.catalog import orders
from fabguard.service.catalog.order_acts import OrderActivation

router = APIRouter(tags=["orders"])


@router.post("/api/v1/orders", status_code=201, response_model=Order)
def create_order(inst: Inst, body: OrderIn, p: Engineer) -> dict[str, object]:
    return orders.create_order(
        inst,
        order_id=OrderId(body.id) if body.id else None,
        product_id=ProductId.named(body.product_id),
        site_id=SiteId.named(body.site_id),
        quota=body.quota,
        valid_from=body.valid_from,
        valid_until=body.valid_until,
        actor=p.actor,
    ).to_dict()


@router.get("/api/v1/orders", response_model=list[Order])
def list_orders(inst: Inst, p: SiteReader) -> list[dict[str, object]]:
    """Every order; an operator's token lists only its site's."""
    return [o.to_dict() for o in orders.list_orders(inst) if p.sees_site(o.site_id)]


@router.get("/api/v1/orders/{order_id}", response_model=Order)
def get_order(inst: Inst, order_id: str, p: SiteReader) -> dict[str, object]:
    """One order; another site's order is not found for an operator's token."""
    return visible_order(p, orders.get_order(inst, order_id)).to_dict()


@router.get("/api/v1/orders/{order_id}/units", response_model=list[OrderUnit], response_model_exclude_unset=True)
def order_units(
    inst: Inst, order_id: str, p: SiteReader, after: Count = 0, limit: Count = 100
) -> list[dict[str, object]]:
    visible_order(p, orders.get_order(inst, order_id))
    return orders.order_units(inst, order_id, after_id=after, limit=min(max(limit, 1), inst.limits.max_page))


@router.post(
    "/api/v1/orders/{order_id}/state",
    responses={
        202: {
            "description": "Resuming a suspended order: a pending request a second person approves",
            "model": Approval,
        }
    },
    response_model=Order,
)
def set_order_state(inst: Inst, order_id: str, body: OrderStateIn, p: Engineer) -> Any:
    """Suspend or close an order at once; resuming a suspended one needs a second person (answer 202,
    the pending request; ``POST /api/v1/approvals/{id}/approve``)."""
    new_state = body.state
    current = orders.get_order(inst, order_id)
    if new_state is OrderState.ACTIVE and current.state == OrderState.SUSPENDED.value:
        pending = requests.request(inst, OrderId(order_id).value, OrderActivation(), by=requests.Person.of(p))
        return JSONResponse(pending.to_dict(), status_code=202)
    return orders.set_order_state(inst, order_id, new_state, actor=p.actor).to_dict()


@router.post("/api/v1/orders/{order_id}/quota-changes", status_code=201, response_model=QuotaChange)
def request_quota_change(inst: Inst, order_id: str, body: QuotaChangeIn, p: Engineer) -> dict[str, object]:
    """Lowering applies at once; raising creates a pending change for a second approver."""
    return orders.request_quota_change(inst, order_id, body.quota, reason=body.reason, actor=p.actor)


@router.post("/api/v1/quota-changes/{change_id}/approve", response_model=QuotaChange)
def approve_quota_change(inst: Inst, change_id: ChangeId, p: Approver) -> dict[str, object]:
    return orders.decide_quota_change(inst, change_id, approve=True, actor=p.actor)


@router.post("/api/v1/quota-changes/{change_id}/reject", response_model=QuotaChange)
def reject_quota_change(inst: Inst, change_id: ChangeId, p: Approver) -> dict[str, object]:
    return orders.decide_quota_change(inst, change_id, approve=False, actor=p.actor)
