"""Field genuineness checks: challenges, devices' answers judged (one, or a device cloud's batch), the checks
so far (docs/howto/field-checks.md). Answers are decided by this process's field writer (``runtime.field_writer``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from fabguard.api.deps import FieldChecker, Inst, Reader
from fabguard.api.responses.field import (
    FieldBatchResults,
    FieldChallenge,
    FieldChallenges,
    FieldCheck,
    FieldVerdict,
)
from fabguard.domain.errors import FabGuardError
from fabguard.domain.field import MAX_CHAIN_BYTES
from fabguard.runtime.field_writer import FieldWriter
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


class FieldBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    answers: list[FieldAnswerIn] = Field(
        description="Devices' answers, each to its own challenge (1 to Limits.max_field_batch, default 500; "
        "more or none is 422 field_batch_invalid)"
    )


class ChallengesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    count: int = Field(description="How many challenges (1 to Limits.max_field_batch, default 500)")


def _client(request: Request) -> str | None:
    return request.client.host if request.client else None


def _writer(request: Request) -> FieldWriter:
    writer: FieldWriter = request.app.state.field_writer
    return writer


def _error(exc: BaseException) -> dict[str, object]:
    if isinstance(exc, FabGuardError):
        return {"error": {"code": exc.code, "message": exc.message}}
    return {"error": {"code": "internal_error", "message": "this answer could not be decided: send it again"}}


@router.post("/api/v1/field/challenge", response_model=FieldChallenge)
def field_challenge(inst: Inst, p: FieldChecker) -> dict[str, str]:
    """A fresh single-use nonce, valid 5 minutes. The device signs ``context`` (hex) followed by the 32 nonce
    bytes; only a ``field`` token (or an admin) may ask. Stateless: the nonce carries its expiry and a MAC
    under the instance's key, so any server process of the instance can judge the answer."""
    return genuineness.issue_challenge(inst, actor=p.actor)


@router.post("/api/v1/field/challenges", response_model=FieldChallenges)
def field_challenges(inst: Inst, body: ChallengesIn, p: FieldChecker) -> dict[str, list[dict[str, str]]]:
    """``count`` fresh challenges at once (a device cloud's, one per connecting device), as /field/challenge."""
    return {"challenges": genuineness.issue_challenges(inst, actor=p.actor, count=body.count)}


@router.post("/api/v1/field/verify", response_model=FieldVerdict, response_model_exclude_unset=True)
def field_verify(inst: Inst, body: FieldAnswerIn, request: Request, p: FieldChecker) -> dict[str, object]:
    """Judge a device's answer: 200 with ``genuine`` true, or false with a ``reason`` (chain_untrusted,
    certificate_expired, issuing_ca_revoked, serial_unknown, key_mismatch, certificate_superseded,
    serial_not_allocated, unit_revoked, signature_invalid) and the ``clone`` signal it shows. A malformed answer is 422, a
    nonce that is unknown 404, used or expired 409; those spend nothing. Every outcome is an event."""
    origin = genuineness.parse_origin(inst, actor=p.actor, source=body.source, client=_client(request))
    answer = genuineness.parse_answer(inst, origin, nonce=body.nonce, signature=body.signature, chain_pem=body.chain)
    return genuineness.verify(inst, answer, origin, run=_writer(request).run)


@router.post("/api/v1/field/verify-batch", response_model=FieldBatchResults, response_model_exclude_unset=True)
def field_verify_batch(inst: Inst, body: FieldBatchIn, request: Request, p: FieldChecker) -> dict[str, list[Any]]:
    """Judge many devices' answers in one request (a device cloud's batch), decided and committed together
    with other requests' checks. ``results`` holds one entry per answer, in order: the verdict as
    /field/verify answers it, or ``{"error": {"code", "message"}}`` for an answer refused (malformed 422
    codes, nonce_unknown, nonce_expired, nonce_used); a refused answer refuses itself only, and every
    outcome is an event."""
    raw = [genuineness.RawAnswer(a.nonce, a.signature, a.chain, a.source) for a in body.answers]
    outcomes = genuineness.verify_batch(inst, raw, actor=p.actor, client=_client(request), run=_writer(request).run)
    return {"results": [_error(o) if isinstance(o, BaseException) else o for o in outcomes]}


@router.get("/api/v1/field/checks", response_model=list[FieldCheck])
def list_field_checks(inst: Inst, _: Reader, limit: int = Query(50, ge=1, le=500)) -> list[dict[str, Any]]:
    """The latest field checks, newest first: verdict, reason, clone signal, where from."""
    return genuineness.list_checks(inst, limit=limit)
