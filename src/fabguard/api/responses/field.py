"""Answers of field checks (is this device genuine?)."""

from __future__ import annotations

from pydantic import Field

from fabguard.api.responses import Out
from fabguard.api.responses.station import RefusalDetail as ErrorDetail


class FieldChallenge(Out):
    nonce: str = Field(description="hex; the device signs it (with the context) with its key")
    expires_at: str
    context: str = Field(description="hex; what the device signs before the nonce")


class FieldVerdict(Out):
    genuine: bool
    reason: str | None = Field(description="Why not genuine (an error code)")
    serial: str | None
    order_id: str | None
    signature_valid: bool
    source: str | None = Field(description="What the checker said it is (an app, a service)")
    client: str | None = Field(description="The checker's address")
    place: str
    cert_sha256: str
    cert_serial: str = Field(description="hex")
    clone: str | None = Field(description="A clone signal, when the serial was seen elsewhere")
    other_place: str | None = Field(default=None, description="Where else it was seen (with a clone signal)")
    seq: int | None = Field(
        description="The ledger event recording the check; none for a genuine check with no clone signal (ADR 0015)"
    )
    check_id: int = Field(description="The check's row (GET /api/v1/field/checks)")
    checked_at: str


class FieldChallenges(Out):
    challenges: list[FieldChallenge]


class FieldCheck(Out):
    seq: int | None = Field(description="Its ledger event, if it is one (ADR 0015)")
    at: str
    serial: str | None
    genuine: bool
    reason: str | None
    clone: str | None
    place: str
    source: str | None
    client: str | None
    actor: str


class FieldRefusal(Out):
    """An answer of a batch refused on its own (malformed, nonce_unknown, nonce_expired, nonce_used)."""

    error: ErrorDetail


class FieldBatchResults(Out):
    results: list[FieldVerdict | FieldRefusal] = Field(description="One per answer, in order")
