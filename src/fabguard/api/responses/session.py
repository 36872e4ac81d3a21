"""Answers about the dashboard's browser session."""

from __future__ import annotations

from pydantic import Field

from fabguard.api.responses import Out
from fabguard.domain.values import Role


class WhoAmI(Out):
    token_id: str = Field(description="The token behind the session (or the bearer token)")
    name: str = Field(description="Its person's name (else the token's)")
    role: Role
    site_id: str | None = Field(description="An operator's site")
    token_expires_at: str | None


class SignedOut(Out):
    ended: bool = Field(description="Whether a session was open (its cookie is cleared either way)")


class SignedIn(WhoAmI):
    session_expires_at: str
