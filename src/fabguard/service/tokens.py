"""API tokens: shown once, stored as SHA-256 hashes (they carry 256 bits of entropy, so no slow hash is needed)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select

from fabguard.domain.errors import Forbidden, InvalidRequest, Unauthorized
from fabguard.domain.values import Role
from fabguard.service.instance import Instance
from fabguard.store.db import append_event
from fabguard.store.models import ApiToken

TOKEN_PREFIX = "fgt_"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is acting: a token's id, name and role (or a local operator of the CLI)."""

    id: str
    name: str
    role: Role

    @property
    def actor(self) -> str:
        return f"{self.name} ({self.id})"

    def require(self, *roles: Role) -> None:
        if self.role not in roles and self.role is not Role.ADMIN:
            allowed = ", ".join(r.value for r in roles)
            raise Forbidden(f"this needs the role {allowed}; your token has {self.role.value}")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(inst: Instance, *, name: str, role: Role | str, actor: str) -> tuple[Principal, str]:
    """Make a token and return it in clear text: the only time it exists outside its holder's hands."""
    try:
        role = Role(role)
    except ValueError:
        raise InvalidRequest(f"unknown role {role!r}; one of {', '.join(r.value for r in Role)}") from None
    if not name or len(name) > 128 or not name.isprintable():
        raise InvalidRequest("a token name must be 1-128 printable characters")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token_id = secrets.token_hex(8)
    now = inst.clock()
    with inst.db.transaction() as s:
        s.add(ApiToken(id=token_id, name=name, role=role.value, token_hash=hash_token(token), created_at=now))
        append_event(
            s,
            "token.created",
            at=now,
            actor=actor,
            detail={"token_id": token_id, "name": name, "role": role.value},
        )
    return Principal(token_id, name, role), token


def authenticate_token(inst: Instance, token: str | None) -> Principal:
    if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 100:
        raise Unauthorized("a valid API token is needed (Authorization: Bearer fgt_...)")
    digest = hash_token(token)
    with inst.db.read() as s:
        row = s.execute(select(ApiToken).where(ApiToken.token_hash == digest)).scalar_one_or_none()
    if row is None or not hmac.compare_digest(row.token_hash, digest) or row.revoked_at is not None:
        raise Unauthorized("the API token is unknown or revoked")
    return Principal(row.id, row.name, Role(row.role))


def list_tokens(inst: Instance) -> list[ApiToken]:
    with inst.db.read() as s:
        return list(s.execute(select(ApiToken).order_by(ApiToken.created_at)).scalars())


def revoke_token(inst: Instance, token_id: str, *, actor: str) -> None:
    now = inst.clock()
    with inst.db.transaction() as s:
        row = s.get(ApiToken, token_id)
        if row is None:
            raise InvalidRequest(f"no token {token_id!r}", code="token_not_found")
        row.revoked_at = now
        append_event(s, "token.revoked", at=now, actor=actor, detail={"token_id": token_id})
