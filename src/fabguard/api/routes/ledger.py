"""The transparency ledger: signed checkpoints, the verifier key, inclusion and consistency proofs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, PlainTextResponse

from fabguard.api.archives import ARCHIVE_MEDIA, directory_archive
from fabguard.api.deps import Admin, Count, Engineer, Inst, Reader
from fabguard.api.media import JSON, answers
from fabguard.api.responses.ledger import Checkpoint, ConsistencyProof, InclusionProof, LedgerKeyChain
from fabguard.service.ledger import ledger_keys, merkle_log

router = APIRouter(tags=["ledger"])

CheckpointFormat = Annotated[Literal["json", "note"], Query(description="json (default) or note: the bare signed note")]


def _checkpoint(cp: merkle_log.SignedCheckpoint, format: str) -> Any:
    if format == "note":
        return PlainTextResponse(cp.note)
    return cp.to_dict()


@router.get(
    "/api/v1/ledger/checkpoint",
    **answers("The checkpoint; format=note: the signed note", JSON, "text/plain"),
    response_model=Checkpoint,
)
def ledger_checkpoint(inst: Inst, _: Reader, format: CheckpointFormat = "json") -> Any:
    """The newest stored checkpoint, read only (404 ``checkpoint_not_found`` before the first). The server
    signs one every ``checkpoint_seconds`` when the tree grew; ``POST`` signs one now."""
    return _checkpoint(merkle_log.newest_checkpoint(inst), format)


@router.post(
    "/api/v1/ledger/checkpoint",
    **answers("The checkpoint; format=note: the signed note", JSON, "text/plain"),
    response_model=Checkpoint,
)
def take_checkpoint(inst: Inst, _: Engineer, format: CheckpointFormat = "json") -> Any:
    """Sign the current tree head now and keep it (once per tree size: the same size answers the stored one)."""
    return _checkpoint(merkle_log.make_checkpoint(inst), format)


@router.get("/api/v1/ledger/checkpoints", response_model=list[Checkpoint])
def ledger_checkpoints(inst: Inst, _: Reader, limit: Count = 100) -> list[dict[str, Any]]:
    return [c.to_dict() for c in merkle_log.checkpoints(inst, limit=min(max(limit, 1), inst.limits.max_page))]


@router.get("/api/v1/ledger/key")
def ledger_key(inst: Inst, _: Reader) -> dict[str, str]:
    """The verifier key (C2SP signed-note form) that checks every checkpoint offline."""
    return {"verifier_key": merkle_log.public_verifier_key(inst)}


@router.get(
    "/api/v1/ledger/keys",
    summary="The chain of checkpoint keys (after a rotation, how each key links to the next)",
    response_model=LedgerKeyChain,
)
def ledger_key_chain(inst: Inst, _: Reader) -> dict[str, Any]:
    return ledger_keys.document(inst)


@router.post(
    "/api/v1/ledger/keys/rotate",
    summary="Begin a rotation of the checkpoint key: a new key, endorsed by the old; both sign until finished",
    response_model=LedgerKeyChain,
)
def ledger_key_rotate(inst: Inst, p: Admin) -> dict[str, Any]:
    ledger_keys.rotate(inst, actor=p.actor)
    return ledger_keys.document(inst)


@router.post(
    "/api/v1/ledger/keys/finish-rotation",
    summary="End a rotation's overlap: the new key signs the old one's retirement and alone signs from now on",
    response_model=LedgerKeyChain,
)
def ledger_key_finish(inst: Inst, p: Admin) -> dict[str, Any]:
    ledger_keys.finish_rotation(inst, actor=p.actor)
    return ledger_keys.document(inst)


@router.get("/api/v1/ledger/proof/inclusion", response_model=InclusionProof)
def ledger_inclusion(
    inst: Inst,
    _: Reader,
    index: Count | None = None,
    serial: str | None = None,
    cert: str | None = None,
    size: Count | None = None,
) -> dict[str, Any]:
    """Inclusion proof for one entry, named by index, unit serial, or certificate serial/SHA-256."""
    if index is None:
        index = merkle_log.index_of_unit(inst, serial=serial, cert=cert)
    return merkle_log.inclusion(inst, index, size)


@router.get("/api/v1/ledger/proof/consistency", response_model=ConsistencyProof)
def ledger_consistency(inst: Inst, _: Reader, first: Count, second: Count | None = None) -> dict[str, Any]:
    return merkle_log.consistency(inst, first, second)


@router.post("/api/v1/ledger/export", **answers("The export directory as a gzip-compressed tar archive", ARCHIVE_MEDIA))
def ledger_export(inst: Inst, _: Engineer) -> FileResponse:
    """Sign a checkpoint of the whole ledger, then answer what ``fabguard ledger export DIR`` writes (entries,
    checkpoints, the verifier key, the CA and unit certificates) as one ``.tar.gz``; ``fabguard --server URL
    ledger export DIR`` unpacks it. Verify it offline with the verifier key you kept, never with its own."""

    def fill(out: Path) -> dict[str, str]:
        merkle_log.export(inst, out)
        return {}

    return directory_archive(fill, "ledger-export.tar.gz")
