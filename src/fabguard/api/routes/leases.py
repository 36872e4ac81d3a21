"""Quota leases for offline site agents: issue one (admin), list them (readers)."""

from __future__ import annotations

import json
from datetime import timedelta

from fastapi import APIRouter

from fabguard.api.deps import Admin, Inst, Reader
from fabguard.api.schemas import LeaseIn
from fabguard.domain.values import OrderId
from fabguard.service import leases

router = APIRouter(tags=["leases"])


@router.post("/api/v1/orders/{order_id}/leases", status_code=201)
def issue_lease(inst: Inst, order_id: str, body: LeaseIn, p: Admin) -> dict[str, object]:
    """Reserve units of the order for one site agent; the answer is the signed lease bundle for 'agent init'."""
    return leases.issue_lease(
        inst,
        OrderId.named(order_id),
        units=body.units,
        expires_in=timedelta(minutes=body.expires_in_minutes),
        request=leases.parse_agent_request(json.dumps(body.agent_request)),
        actor=p.actor,
    )


@router.get("/api/v1/leases")
def list_leases(inst: Inst, _: Reader, order_id: str | None = None) -> list[dict[str, object]]:
    """Every lease issued (optionally one order's), with its units, end and state."""
    return leases.list_leases(inst, order_id=order_id)


@router.get("/api/v1/leases/{lease_id}")
def get_lease(inst: Inst, lease_id: str, _: Reader) -> dict[str, object]:
    return leases.get_lease(inst, lease_id)
