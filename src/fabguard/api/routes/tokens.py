"""API tokens (admin)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter

from fabguard.api.deps import Admin, Inst
from fabguard.api.schemas import TokenIn
from fabguard.domain.values import SiteId
from fabguard.service import tokens

router = APIRouter(tags=["admin"])


@router.post("/api/v1/tokens", status_code=201)
def create_token(inst: Inst, body: TokenIn, p: Admin) -> dict[str, Any]:
    """A named token for one role (and one site for an operator) that expires; its secret is shown once."""
    made, secret = tokens.create_token(
        inst,
        name=body.name,
        role=body.role,
        actor=p.actor,
        site_id=SiteId.named(body.site_id) if body.site_id is not None else None,
        expires_in=timedelta(days=body.expires_in_days) if body.expires_in_days is not None else None,
    )
    return {
        "id": made.id,
        "name": made.name,
        "role": made.role.value,
        "site_id": made.site_id,
        "expires_at": made.expires_at.isoformat() if made.expires_at else None,
        "token": secret,
    }
