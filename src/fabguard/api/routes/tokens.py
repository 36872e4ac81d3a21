"""API tokens (admin)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from fabguard.api.deps import Admin, Inst
from fabguard.api.schemas import TokenIn
from fabguard.service import tokens

router = APIRouter(tags=["admin"])


@router.post("/api/v1/tokens", status_code=201)
def create_token(inst: Inst, body: TokenIn, p: Admin) -> dict[str, Any]:
    made, secret = tokens.create_token(inst, name=body.name, role=body.role, actor=p.actor)
    return {"id": made.id, "name": made.name, "role": made.role.value, "token": secret}
