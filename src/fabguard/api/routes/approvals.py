"""Dual control: the pending requests for dangerous acts, and the second person's decision."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from fabguard.api.deps import Approver, ChangeId, Inst, Reader
from fabguard.api.responses.authority import Approval
from fabguard.service.agent import lease_acts
from fabguard.service.approvals import person_acts, requests
from fabguard.service.authority import ca_acts
from fabguard.service.catalog import order_acts
from fabguard.service.royalties import licence_acts

# Each slice registers the acts it carries out when its module is imported: all of them, so that any
# stored request can be listed and decided here.
ACT_MODULES = (ca_acts, lease_acts, licence_acts, order_acts, person_acts)

router = APIRouter(tags=["approvals"])

StateQuery = Annotated[
    Literal["pending", "approved", "rejected", "expired"],
    Query(description="pending (default: waiting and not expired), approved, rejected or expired"),
]


@router.get("/api/v1/approvals", response_model=list[Approval])
def list_approvals(inst: Inst, _: Approver, state: StateQuery = "pending") -> list[dict[str, object]]:
    """Requests waiting for a second person (or, with ``state``, those decided or expired)."""
    return [a.to_dict() for a in requests.list_approvals(inst, state)]


@router.get("/api/v1/approvals/{approval_id}", response_model=Approval)
def get_approval(inst: Inst, approval_id: ChangeId, _: Reader) -> dict[str, object]:
    """One request and, once approved, what its act did."""
    return requests.get_approval(inst, approval_id).to_dict()


@router.post("/api/v1/approvals/{approval_id}/approve", response_model=Approval)
def approve_request(inst: Inst, approval_id: ChangeId, p: Approver) -> dict[str, object]:
    """Approve and carry out the act, in one transaction: only by someone other than the requester,
    before the request expires."""
    return requests.decide(inst, approval_id, approve=True, by=p).to_dict()


@router.post("/api/v1/approvals/{approval_id}/reject", response_model=Approval)
def reject_request(inst: Inst, approval_id: ChangeId, p: Approver) -> dict[str, object]:
    """Reject the request: nothing is done."""
    return requests.decide(inst, approval_id, approve=False, by=p).to_dict()
