"""Cosigned checkpoints: witnesses (CM sites' cosigner keys), what a witness is handed, the cosignatures it sends."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from fabguard.api.deps import Count, Engineer, Inst, Reader, SiteReader, allow
from fabguard.api.media import JSON, answers
from fabguard.api.responses.ledger import Cosignatures, CosignedCheckpoint, Witness
from fabguard.domain.values import Role, SiteId
from fabguard.service.access import tokens
from fabguard.service.ledger import witness

router = APIRouter(tags=["ledger"])

# A witness's cosignatures come from the CM site (its operator token) or from an engineer relaying them.
Cosigner = Annotated[tokens.Principal, Depends(allow(Role.ENGINEER, Role.OPERATOR))]


class WitnessIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    site_id: str = Field(max_length=63)
    verifier_key: str = Field(
        max_length=400, description="C2SP cosigner key: name+hexid+base64(0x04 || Ed25519 public key)"
    )


class CosignaturesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    size: int = Field(ge=0, le=2**62, description="The tree size of the checkpoint they cosign")
    signatures: str = Field(
        max_length=16_384, description="Newline-terminated signature lines, as a C2SP witness answers add-checkpoint"
    )


@router.post("/api/v1/ledger/witnesses", status_code=201, response_model=Witness)
def register_witness(inst: Inst, body: WitnessIn, p: Engineer) -> dict[str, Any]:
    """Register a site's witness key (a ledger event); its cosignatures are accepted from then on."""
    w = witness.register_witness(inst, site_id=SiteId(body.site_id), verifier_key=body.verifier_key, actor=p.actor)
    return w.__dict__


@router.get("/api/v1/ledger/witnesses", response_model=list[Witness])
def list_witnesses(inst: Inst, _: Reader) -> list[dict[str, Any]]:
    return [w.__dict__ for w in witness.list_witnesses(inst)]


@router.get("/api/v1/ledger/cosign-request", **answers("The C2SP add-checkpoint body", "text/plain"))
def cosign_request(inst: Inst, _: SiteReader, old: Count = 0) -> PlainTextResponse:
    """For a witness that last cosigned size ``old``: ``old N``, the consistency proof, a blank line, the newest
    stored checkpoint (signs none: 404 ``checkpoint_not_found`` before the first; the server signs one every
    ``checkpoint_seconds`` when the ledger grew, an engineer with ``POST /api/v1/ledger/checkpoint``)."""
    return PlainTextResponse(witness.cosign_request(inst, old))


@router.post("/api/v1/ledger/cosignatures", status_code=201, response_model=Cosignatures)
def add_cosignatures(inst: Inst, body: CosignaturesIn, p: Cosigner) -> dict[str, Any]:
    """Keep cosignatures of a checkpoint, each verified with its registered witness key first."""
    names = witness.add_cosignatures(inst, witness.Sender.of(p), size=body.size, lines=body.signatures)
    return {"size": body.size, "witnesses": names}


@router.get(
    "/api/v1/ledger/checkpoint/cosigned",
    **answers("The cosigned checkpoint; format=note: the note", JSON, "text/plain"),
    response_model=CosignedCheckpoint,
)
def cosigned_checkpoint(
    inst: Inst, _: SiteReader, size: Count | None = None, format: Literal["json", "note"] = "json"
) -> Any:
    """A checkpoint with its witnesses' signature lines under the log's (default: the newest cosigned one)."""
    cp = witness.cosigned_checkpoint(inst, size)
    if format == "note":
        return PlainTextResponse(str(cp["note"]))
    return cp
