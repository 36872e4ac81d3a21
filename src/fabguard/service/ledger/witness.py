"""Cosigned checkpoints on the server's side: witnesses registered per site, the cosignatures they send.

Registering a witness (a CM site's cosigner key) is an engineer's act and a ledger event. A
cosignature is stored only once it verifies, with the registered key, over the stored checkpoint it
names; it is not a ledger event (an entry per cosignature would grow the tree it signs). What a
witness is handed is the C2SP ``add-checkpoint`` body: its old size, the consistency proof, the newest
stored checkpoint (the API's GET signs none; the server signs one every ``checkpoint_seconds`` when the
ledger grew).
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from fabguard.domain.errors import Conflict, FabGuardError, Forbidden, InvalidRequest, NotFound
from fabguard.domain.values import Role, SiteId
from fabguard.ledger.checkpoint import CheckpointError, parse_checkpoint
from fabguard.ledger.cosignature import (
    CosignatureError,
    append_cosignatures,
    parse_cosigner_key,
    signature_lines,
    split_note,
    verify_cosignature,
)
from fabguard.ledger.witness import format_add_checkpoint
from fabguard.service.access.tokens import Principal
from fabguard.service.core.instance import Instance
from fabguard.service.ledger import merkle_log
from fabguard.store.eventlog import append_event
from fabguard.store.models import CheckpointRow, Site
from fabguard.store.witness_models import CosignatureRow, WitnessKey

__all__ = [
    "CLOCK_SKEW_SECONDS",
    "Sender",
    "WitnessView",
    "add_cosignatures",
    "add_cosigned_note",
    "cosign_request",
    "cosigned_checkpoint",
    "list_witnesses",
    "register_witness",
]

log = logging.getLogger(__name__)

# How far a cosignature's time may run ahead of the server's clock (or precede the checkpoint's signing).
CLOCK_SKEW_SECONDS = 300


@dataclass(frozen=True)
class WitnessView:
    name: str
    key_id: str
    verifier_key: str
    site_id: str
    registered_by: str
    registered_at: str

    @classmethod
    def of(cls, w: WitnessKey) -> WitnessView:
        return cls(w.name, w.key_id.hex(), w.verifier_key, w.site_id, w.registered_by, w.registered_at.isoformat())


def register_witness(inst: Instance, *, site_id: SiteId, verifier_key: str, actor: str) -> WitnessView:
    """Register ``site_id``'s witness by its cosigner verifier key (``name+hexid+base64(0x04 || key)``)."""
    key = parse_cosigner_key(verifier_key)
    now = inst.clock()
    row = WitnessKey(
        name=key.name,
        key_id=key.key_id,
        verifier_key=key.verifier_key,
        site_id=site_id.value,
        registered_by=actor,
        registered_at=now,
    )
    try:
        with inst.db.transaction() as s:
            if s.get(Site, site_id.value) is None:
                raise NotFound(f"no site {site_id}", code="site_not_found")
            s.add(row)
            s.flush()
            append_event(
                s,
                "witness.registered",
                at=now,
                actor=actor,
                detail={"site_id": site_id.value, "name": key.name, "verifier_key": key.verifier_key},
            )
    except IntegrityError:
        raise Conflict(f"the witness {key.name} with this key is registered already", code="witness_exists") from None
    return WitnessView.of(row)


def list_witnesses(inst: Instance) -> list[WitnessView]:
    with inst.db.read() as s:
        return [WitnessView.of(w) for w in s.execute(select(WitnessKey).order_by(WitnessKey.id)).scalars()]


def cosign_request(inst: Instance, old: int, *, sign_checkpoint: bool = False) -> str:
    """The ``add-checkpoint`` body for a witness that last cosigned size ``old``: proof, then the newest stored
    checkpoint (signs nothing: the API's GET; ``checkpoint_not_found`` before the first). With
    ``sign_checkpoint``, one of the whole tree is signed first if it grew (a write: the command line)."""
    cp = merkle_log.latest_checkpoint(inst) if sign_checkpoint else merkle_log.newest_checkpoint(inst)
    if old > cp.size:
        raise InvalidRequest(
            f"old size {old} is larger than the newest checkpoint ({cp.size}): this witness saw another log",
            code="invalid_tree_size",
        )
    proof = merkle_log.consistency(inst, old, cp.size)["proof"] if 0 < old < cp.size else []
    assert isinstance(proof, list)
    return format_add_checkpoint(old, [base64.b64decode(h) for h in proof], cp.note)


@dataclass(frozen=True)
class Sender:
    """Who hands the server cosignatures: named for the log, and the one site it may speak for (or any)."""

    actor: str
    site_id: str | None = None

    @classmethod
    def of(cls, p: Principal) -> Sender:
        return cls(p.actor, p.site_id if p.role is Role.OPERATOR else None)


def _refuse(error: FabGuardError, who: Sender, size: int) -> FabGuardError:
    log.warning("cosignature refused for checkpoint %d from %s: %s [%s]", size, who.actor, error.message, error.code)
    return error


def add_cosigned_note(inst: Instance, who: Sender, note: str) -> tuple[int, list[str]]:
    """Keep the cosignatures of a cosigned note (the checkpoint with the witness's lines under the log's)."""
    try:
        body, lines = split_note(note)
        size = parse_checkpoint(body).size
    except (CosignatureError, CheckpointError) as exc:
        raise _refuse(exc, who, -1) from None
    own = merkle_log.public_verifier_key(inst).split("+")[0]
    theirs = [line for line in lines if line.split(" ")[1:2] != [own]]
    return size, add_cosignatures(inst, who, size=size, lines="".join(line + "\n" for line in theirs))


def add_cosignatures(inst: Instance, who: Sender, *, size: int, lines: str) -> list[str]:
    """Verify and keep the witnesses' signature lines for checkpoint ``size``; returns the names they came from.

    Each line must be by a registered witness (an operator may send only its own site's) and verify over
    the stored checkpoint; one bad line refuses them all and stores nothing.
    """
    try:
        parsed = signature_lines(lines)
    except CosignatureError as exc:
        raise _refuse(exc, who, size) from None
    try:
        return _store(inst, who, size, parsed)
    except IntegrityError:
        # Another request stored the same witness's cosignature of this size at the same moment: the
        # second try finds it and keeps the first.
        return _store(inst, who, size, parsed)


def _store(inst: Instance, who: Sender, size: int, parsed: list[str]) -> list[str]:
    now = inst.clock()
    names: list[str] = []
    with inst.db.transaction() as s:
        cp = s.get(CheckpointRow, size)
        if cp is None:
            raise _refuse(NotFound(f"no checkpoint of size {size}", code="checkpoint_not_found"), who, size)
        body = cp.note[: cp.note.index("\n\n") + 1]
        rows: list[CosignatureRow] = []
        for line in parsed:
            name, _, blob = line[2:].partition(" ")
            witness = s.execute(
                select(WitnessKey).where(WitnessKey.name == name, WitnessKey.key_id == base64.b64decode(blob)[:4])
            ).scalar_one_or_none()
            if witness is None:
                raise _refuse(
                    Forbidden(f"no witness {name} with this key id is registered", code="witness_unknown"), who, size
                )
            if who.site_id is not None and who.site_id != witness.site_id:
                raise _refuse(Forbidden(f"the witness {name} belongs to another site"), who, size)
            try:
                timestamp = verify_cosignature(body, line, parse_cosigner_key(witness.verifier_key))
            except CosignatureError as exc:
                raise _refuse(exc, who, size) from None
            signed_at = int(cp.created_at.timestamp())
            if not signed_at - CLOCK_SKEW_SECONDS <= timestamp <= int(now.timestamp()) + CLOCK_SKEW_SECONDS:
                raise _refuse(
                    CosignatureError(
                        f"the cosignature of {name} is dated {timestamp}, outside the checkpoint's signing "
                        f"({signed_at}) .. now (+{CLOCK_SKEW_SECONDS} s)"
                    ),
                    who,
                    size,
                )
            if all(r.witness_id != witness.id for r in rows):  # one per witness and size: the first line sent
                rows.append(CosignatureRow(checkpoint_size=size, witness_id=witness.id, timestamp=timestamp, line=line))
                names.append(name)
        for row in rows:
            exists = s.execute(
                select(CosignatureRow.id).where(
                    CosignatureRow.checkpoint_size == size, CosignatureRow.witness_id == row.witness_id
                )
            ).first()
            if exists is None:
                row.received_at = now
                s.add(row)
    log.info("cosignatures of checkpoint %d stored from %s: %s", size, who.actor, ", ".join(names))
    return names


def cosigned_checkpoint(inst: Instance, size: int | None = None) -> dict[str, object]:
    """A checkpoint's note with its cosignatures under it: ``size``, else the newest one that has any."""
    with inst.db.read() as s:
        if size is None:
            size = s.execute(
                select(CosignatureRow.checkpoint_size).order_by(CosignatureRow.checkpoint_size.desc()).limit(1)
            ).scalar_one_or_none()
            if size is None:
                raise NotFound("no checkpoint has been cosigned yet", code="checkpoint_not_found")
        cp = s.get(CheckpointRow, size)
        if cp is None:
            raise NotFound(f"no checkpoint of size {size}", code="checkpoint_not_found")
        lines = merkle_log.cosignature_lines(s, size).get(size, [])
        witnesses = s.execute(
            select(WitnessKey.name)
            .join(CosignatureRow, CosignatureRow.witness_id == WitnessKey.id)
            .where(CosignatureRow.checkpoint_size == size)
            .order_by(CosignatureRow.id)
        ).scalars()
        return {
            "size": cp.size,
            "root": base64.b64encode(bytes(cp.root)).decode(),
            "witnesses": list(witnesses),
            "note": append_cosignatures(cp.note, lines),
        }
