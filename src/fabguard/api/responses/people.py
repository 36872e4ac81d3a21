"""Answers about people and their tokens."""

from __future__ import annotations

from pydantic import Field

from fabguard.api.responses import Out
from fabguard.api.responses.authority import Approval


class Person(Out):
    id: str
    name: str
    contact: str
    roles: list[str] = Field(description="Roles they hold (docs/roles.md)")
    site_id: str | None = Field(description="An operator's site")
    state: str
    created_at: str
    created_by: str
    approving_since: str | None


class PersonChange(Person):
    """The person after the change; granting approver or admin waits for a second person (answer 202)."""

    pending_approval: Approval | None = Field(description="The request a second person approves, if any")


class PersonToken(Out):
    """A token of a person, without its secret."""

    id: str
    name: str
    role: str
    site_id: str | None
    created_at: str
    expires_at: str | None
    revoked_at: str | None
    made_by_person: str | None = Field(description="The person who made it")


class PersonWithTokens(Person):
    tokens: list[PersonToken]


class NewToken(Out):
    id: str
    name: str
    role: str
    site_id: str | None
    person_id: str
    expires_at: str | None
    token: str = Field(description="The secret, shown once: send it as Authorization: Bearer <token>")


class PendingToken(Approval):
    token: str = Field(description="The secret, shown once; it works only once a second person approves")


class TokenListed(Out):
    """A token as the token list shows it: never its secret (only its hash is kept)."""

    id: str
    name: str
    person_id: str | None
    role: str
    site_id: str | None
    created_at: str
    expires_at: str | None
    revoked_at: str | None
    made_by_person: str | None
