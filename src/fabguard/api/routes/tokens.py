"""API tokens (admin)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from fabguard.api.deps import Admin, Inst
from fabguard.api.schemas import TokenIn
from fabguard.domain.values import Role, SiteId
from fabguard.service import approvals, tokens

router = APIRouter(tags=["admin"])


@router.post(
    "/api/v1/tokens",
    status_code=201,
    responses={202: {"description": "An admin token: a pending request a second person approves (docs/roles.md)"}},
)
def create_token(inst: Inst, body: TokenIn, p: Admin) -> Any:
    """A named token for one role (and one site for an operator) that expires; its secret is shown once.

    An admin token needs a second person: the answer is 202, the pending request with the secret, which
    works only once an approver (not the requester) approves it (``POST /api/v1/approvals/{id}/approve``)."""
    spec = tokens.token_spec(
        body.name,
        body.role,
        site_id=SiteId.named(body.site_id) if body.site_id is not None else None,
        expires_in=timedelta(days=body.expires_in_days) if body.expires_in_days is not None else None,
    )
    if spec.role is Role.ADMIN:
        pending, secret = approvals.request_admin_token(inst, spec, by=approvals.Person.of(p))
        return JSONResponse({**pending.to_dict(), "token": secret}, status_code=202)
    made, secret = tokens.create_token(
        inst,
        name=spec.name,
        role=spec.role,
        actor=p.actor,
        site_id=SiteId.named(spec.site_id) if spec.site_id else None,
        expires_in=spec.lifetime,
    )
    return _made(made, secret)


def _made(made: tokens.Principal, secret: str) -> dict[str, Any]:
    return {
        "id": made.id,
        "name": made.name,
        "role": made.role.value,
        "site_id": made.site_id,
        "expires_at": made.expires_at.isoformat() if made.expires_at else None,
        "token": secret,
    }
