"""Quota leases for offline site agents: ask for one (admin; a second person approves), list them (readers),
sync an agent's log, resolve a discrepancy, close a lease to return its unused units (admin)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse

from fabguard.api.deps import Admin, Inst, Reader
from fabguard.api.documents import Published, SyncPackageDocument
from fabguard.api.responses.authority import Approval
from fabguard.api.responses.leases import Lease, LeaseBundle, LeaseClosed, LeaseResolved, LeaseSync
from fabguard.api.schemas import LeaseIn, ResolveIn
from fabguard.domain.errors import InvalidRequest
from fabguard.domain.values import OrderId
from fabguard.service.agent import lease_close, quota_leases, sync
from fabguard.service.agent.agent_request import AgentRequest
from fabguard.service.agent.lease_acts import LeaseIssue
from fabguard.service.approvals import requests

router = APIRouter(tags=["leases"])


@router.post(
    "/api/v1/orders/{order_id}/leases",
    status_code=202,
    responses={202: {"description": "The pending request; a second person approves it (docs/roles.md)"}},
    response_model=Approval,
)
def issue_lease(inst: Inst, order_id: str, body: LeaseIn, p: Admin) -> dict[str, object]:
    """Ask for a lease of units of the order for one site agent. It certifies the agent's CA under the
    root, so a second person approves it (POST /api/v1/approvals/{id}/approve); the approval's result
    names the lease, whose bundle (for 'agent init') is GET /api/v1/leases/{lease_id}/bundle."""
    order = OrderId.named(order_id)
    lease = LeaseIssue.of(
        body.units, timedelta(minutes=body.expires_in_minutes), AgentRequest.from_json(body.agent_request)
    )
    return requests.request(inst, order.value, lease, by=requests.Person.of(p)).to_dict()


@router.get("/api/v1/leases", response_model=list[Lease])
def list_leases(inst: Inst, _: Reader, order_id: str | None = None) -> list[dict[str, object]]:
    """Every lease issued (optionally one order's), with its units, end and state."""
    return quota_leases.list_leases(inst, order_id=order_id)


@router.get("/api/v1/leases/{lease_id}", response_model=Lease)
def get_lease(inst: Inst, lease_id: str, _: Reader) -> dict[str, object]:
    return quota_leases.get_lease(inst, lease_id)


@router.get("/api/v1/leases/{lease_id}/bundle", response_model=LeaseBundle)
def get_lease_bundle(inst: Inst, lease_id: str, _: Admin) -> JSONResponse:
    """The signed lease bundle an agent is made from ('fabguard agent init --lease'): its terms, its CA
    and TLS certificates, the site's fixtures, where its units name this server; no secret."""
    # Sent as signed, never through the model (which documents it): a field added or coerced on the way would
    # break the signature the agent checks.
    return JSONResponse(quota_leases.lease_bundle(inst, lease_id))


@router.post("/api/v1/leases/{lease_id}/sync", response_model=LeaseSync, response_model_exclude_unset=True)
def sync_lease(
    inst: Inst,
    lease_id: str,
    p: Admin,
    package: Annotated[dict[str, Any], Body(description="'agent sync --out' file"), Published(SyncPackageDocument)],
) -> dict[str, object]:
    """Fold a site agent's log (checked against its lease and the log it synced before) into the ledger.

    A discrepancy (units beyond the lease, a forked, tampered or replayed log) is refused, recorded and
    alerted, and stands against new leases for the order and site until resolved. The package accepted
    last, sent again (its answer was lost), is answered again ("resent": true) and changes nothing."""
    parsed = sync.SyncPackage.from_json(package)
    if parsed.lease_id != lease_id:
        raise InvalidRequest(f"the package is for lease {parsed.lease_id}, not {lease_id}", code="lease_sync_invalid")
    return sync.sync_lease(inst, parsed, actor=p.actor)


@router.post("/api/v1/leases/{lease_id}/resolve", response_model=LeaseResolved)
def resolve_lease(inst: Inst, lease_id: str, body: ResolveIn, p: Admin) -> dict[str, object]:
    """Close a lease's discrepancy once it was looked into."""
    return sync.resolve_discrepancy(inst, lease_id, note=body.note, actor=p.actor)


@router.post("/api/v1/leases/{lease_id}/close", response_model=LeaseClosed)
def close_lease(inst: Inst, lease_id: str, p: Admin) -> dict[str, object]:
    """Close a lease once its agent's final log is synced: the units it did not make go back to the order.

    Final: the synced log holds the agent's 'agent finish' entry, or the lease has ended and its last sync came
    after (else 409 lease_not_final). In one transaction the order's used units decrease by exactly the units
    not made and a lease.closed event records leased, made and returned; every later sync of the lease is
    refused, recorded and alerted (409 lease_closed). A second close changes nothing and answers the first's
    figures with already: true, so a lost answer can be asked for again."""
    return lease_close.close_lease(inst, lease_id, actor=p.actor)
