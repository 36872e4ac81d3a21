"""API tokens (admin): every token is a person's, and carries one of their roles."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse

from fabguard.api.deps import Admin, Inst
from fabguard.api.responses.people import NewToken, PendingToken, TokenListed
from fabguard.api.schemas import TokenIn
from fabguard.domain.values import SiteId
from fabguard.service.access import people, tokens
from fabguard.service.approvals import person_acts, requests

router = APIRouter(tags=["admin"])


@router.post(
    "/api/v1/tokens",
    status_code=201,
    responses={
        202: {
            "description": "An admin token, or an approver token for someone else: a pending request a second "
            "person approves (docs/roles.md)",
            "model": PendingToken,
        }
    },
    response_model=NewToken,
)
def create_token(inst: Inst, body: TokenIn, p: Admin) -> Any:
    """A token of a person for one role they hold (and one site for an operator) that expires; its secret
    is shown once.

    An admin token, and (once two people have approving tokens) an approver token for someone else,
    need a second person: the answer is 202, the pending request with the secret, which works only
    once another person approves it (``POST /api/v1/approvals/{id}/approve``)."""
    holder = people.get_person(inst, body.person)
    spec = tokens.token_spec(
        body.name if body.name is not None else holder.name,
        body.role,
        site_id=SiteId.named(body.site_id) if body.site_id is not None else None,
        expires_in=timedelta(days=body.expires_in_days) if body.expires_in_days is not None else None,
    )
    made, secret = person_acts.issue_token(inst, spec, holder.id, by=requests.Person.of(p))
    if isinstance(made, requests.ApprovalView):
        return JSONResponse({**made.to_dict(), "token": secret}, status_code=202)
    return {
        "id": made.id,
        "name": made.name,
        "role": made.role.value,
        "site_id": made.site_id,
        "person_id": made.person_id,
        "expires_at": made.expires_at.isoformat() if made.expires_at else None,
        "token": secret,
    }


@router.get("/api/v1/tokens", response_model=list[TokenListed])
def list_tokens(inst: Inst, _: Admin) -> list[dict[str, object]]:
    """Every token made so far, revoked ones included, with its person: never a secret (only hashes are kept)."""
    return [tokens.token_dict(t) for t in tokens.list_tokens(inst)]


@router.post("/api/v1/tokens/{token_id}/revoke", response_model=TokenListed)
def revoke_token(inst: Inst, token_id: Annotated[str, Path(max_length=64)], p: Admin) -> dict[str, object]:
    """Revoke a token: every later request with it is refused (401). Revoking a revoked token changes nothing
    and answers it as it is; an unknown id is 404 token_not_found."""
    return tokens.revoke_token(inst, token_id, actor=p.actor)
