"""Field genuineness checks: a challenge, a device's answer judged, the checks so far (README "Field checks")."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from fabguard.api.deps import FieldChecker, Inst, Reader
from fabguard.api.responses.field import FieldChallenge, FieldCheck, FieldVerdict
from fabguard.domain.field import MAX_CHAIN_BYTES
from fabguard.service.field import genuineness

router = APIRouter(tags=["field"])


class FieldAnswerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    nonce: str = Field(max_length=64, description="The nonce /api/v1/field/challenge gave (64 hex digits)")
    signature: str = Field(
        max_length=1024,
        description="base64 of the device's signature over context || nonce bytes: ECDSA (DER) with SHA-256 "
        "for P-256, SHA-384 for P-384, or Ed25519",
    )
    chain: str = Field(
        max_length=MAX_CHAIN_BYTES, description="PEM: the device certificate first, then any intermediates"
    )
    # No schema length limit: domain.field.parse_source checks the label (its length too), so an over-long
    # one is the documented field_source_invalid (recorded as a refusal), not a generic invalid_request.
    source: str | None = Field(
        default=None,
        description="Where the device was seen: a store, scanner or cloud region (1-100 characters: letters, "
        "digits, space and . _ : / @ -; anything else is 422 field_source_invalid)",
    )


def _client(request: Request) -> str | None:
    return request.client.host if request.client else None


@router.post("/api/v1/field/challenge", response_model=FieldChallenge)
def field_challenge(inst: Inst, p: FieldChecker) -> dict[str, str]:
    """A fresh single-use nonce, valid 5 minutes. The device signs ``context`` (hex) followed by the 32 nonce
    bytes; only a ``field`` token (or an admin) may ask."""
    return genuineness.issue_challenge(inst, actor=p.actor)


@router.post("/api/v1/field/verify", response_model=FieldVerdict, response_model_exclude_unset=True)
def field_verify(inst: Inst, body: FieldAnswerIn, request: Request, p: FieldChecker) -> dict[str, object]:
    """Judge a device's answer: 200 with ``genuine`` true, or false with a ``reason`` (chain_untrusted,
    certificate_expired, issuing_ca_revoked, serial_unknown, key_mismatch, certificate_superseded,
    unit_revoked, signature_invalid) and the ``clone`` signal it shows. A malformed answer is 422, a
    nonce that is unknown 404, used or expired 409; those spend nothing. Every outcome is an event."""
    origin = genuineness.parse_origin(inst, actor=p.actor, source=body.source, client=_client(request))
    answer = genuineness.parse_answer(inst, origin, nonce=body.nonce, signature=body.signature, chain_pem=body.chain)
    return genuineness.verify(inst, answer, origin)


@router.get("/api/v1/field/checks", response_model=list[FieldCheck])
def list_field_checks(inst: Inst, _: Reader, limit: int = Query(50, ge=1, le=500)) -> list[dict[str, Any]]:
    """The latest field checks, newest first: verdict, reason, clone signal, where from."""
    return genuineness.list_checks(inst, limit=limit)
