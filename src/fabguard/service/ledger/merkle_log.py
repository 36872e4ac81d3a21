"""The ledger as the server keeps it: tree size and root from stored nodes, signed checkpoints, proofs, export."""

from __future__ import annotations

import base64
import json
import shutil
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fabguard.domain.errors import Conflict, InvalidRequest, NotFound
from fabguard.domain.filenames import path_inside, safe_file_name
from fabguard.ledger import merkle
from fabguard.ledger.checkpoint import Checkpoint, sign_checkpoint
from fabguard.ledger.cosignature import append_cosignatures
from fabguard.ledger.export_files import CERTS, EXPORT_FORMAT, IssuedCertificates, IssuedUnit, file_map
from fabguard.ledger.keychain import KEYCHAIN_FILE
from fabguard.service.authority.authorities import device_issuers
from fabguard.service.core.instance import Instance
from fabguard.service.ledger import ledger_keys
from fabguard.service.ledger.ledger_keys import origin
from fabguard.store.eventlog import event_count
from fabguard.store.models import CheckpointRow, Event, LedgerNode, Unit
from fabguard.store.witness_models import CosignatureRow

# What a refused read tells its caller to do (an engineer's or admin's act).
_TAKE_ONE = "POST /api/v1/ledger/checkpoint (or 'fabguard ledger checkpoint') signs one"
_RETRIES = 3  # a unit re-enrolled between the checkpoint and the read of its certificate: export at a newer one


@dataclass(frozen=True)
class SignedCheckpoint:
    size: int
    root: bytes
    note: str

    def to_dict(self) -> dict[str, object]:
        return {"size": self.size, "root": base64.b64encode(self.root).decode(), "note": self.note}


def ledger_signing_key(inst: Instance) -> ed25519.Ed25519PrivateKey:
    """The key that signs single-signature documents (reports, statements, manifests, leases, the CRA pack):
    the oldest that still signs, so during a rotation's overlap verifiers that kept the old key notice nothing."""
    return ledger_keys.signing_keys(inst)[0][1]


def public_verifier_key(inst: Instance) -> str:
    """The key an auditor keeps: ``name+id+key`` (C2SP signed-note verifier key) of :func:`ledger_signing_key`;
    after a rotation, ``ledger_keys.document`` links it to the keys before and after it."""
    return ledger_keys.signing_keys(inst)[0][0]


def _reader(s: Session) -> merkle.NodeReader:
    def get(level: int, idx: int) -> bytes:
        h = s.execute(select(LedgerNode.hash).where(LedgerNode.level == level, LedgerNode.idx == idx)).scalar_one()
        return bytes(h)

    return get


def _size(s: Session, size: int | None) -> int:
    current = event_count(s)
    if size is None:
        return current
    if not 0 <= size <= current:
        raise InvalidRequest(f"tree size {size} is outside 0..{current}", code="invalid_tree_size")
    return size


def tree_head(inst: Instance, size: int | None = None) -> tuple[int, bytes]:
    with inst.db.read() as s:
        n = _size(s, size)
        return n, merkle.root(_reader(s), n)


def make_checkpoint(inst: Instance) -> SignedCheckpoint:
    """Sign the current tree head and keep it (idempotent for a size already signed)."""
    size, root = tree_head(inst)
    keys = [key for _, key in ledger_keys.signing_keys(inst)]  # two during a rotation's overlap
    note = sign_checkpoint(Checkpoint(origin(inst), size, root), origin(inst), *keys)
    try:
        with inst.db.transaction() as s:
            if s.get(CheckpointRow, size) is None:
                s.add(CheckpointRow(size=size, root=root, note=note, created_at=inst.clock()))
    except IntegrityError:
        pass  # another process signed the same size at the same moment
    with inst.db.read() as s:
        row = s.get(CheckpointRow, size)
        assert row is not None
        return SignedCheckpoint(row.size, bytes(row.root), row.note)


def newest_checkpoint(inst: Instance) -> SignedCheckpoint:
    """The newest stored checkpoint; signs nothing (``checkpoint_not_found`` before the first)."""
    with inst.db.read() as s:
        row = s.execute(select(CheckpointRow).order_by(CheckpointRow.size.desc()).limit(1)).scalar_one_or_none()
        if row is None:
            raise NotFound(
                "no checkpoint has been signed yet (POST /api/v1/ledger/checkpoint signs one)",
                code="checkpoint_not_found",
            )
        return SignedCheckpoint(row.size, bytes(row.root), row.note)


def covering_checkpoint(
    inst: Instance, *, since: datetime | None = None, until: datetime | None = None
) -> SignedCheckpoint:
    """The newest stored checkpoint, for a signed document of the period ``since``..``until`` to bind to;
    signs nothing. ``checkpoint_required`` (409) before the first, or when ``until`` is given and an entry
    after the checkpoint falls in the period (the document would leave it out). Without ``until`` the
    period ends at the checkpoint, which the document names."""
    with inst.db.read() as s:
        row = s.execute(select(CheckpointRow).order_by(CheckpointRow.size.desc()).limit(1)).scalar_one_or_none()
        if row is None:
            raise Conflict(
                f"no checkpoint has been signed yet: {_TAKE_ONE} first (the server also signs one every "
                "checkpoint_seconds when the ledger grew)",
                code="checkpoint_required",
            )
        if until is not None:
            later = select(func.count()).select_from(Event).where(Event.seq > row.size, Event.at < until)
            if since is not None:
                later = later.where(Event.at >= since)
            missing = int(s.execute(later).scalar_one())
            if missing:
                raise Conflict(
                    f"the newest checkpoint (size {row.size}, signed {row.created_at.isoformat()}) does not cover "
                    f"the period up to {until.isoformat()}: {missing} later ledger entries fall in it; "
                    f"{_TAKE_ONE} first",
                    code="checkpoint_required",
                )
        return SignedCheckpoint(row.size, bytes(row.root), row.note)


def latest_checkpoint(inst: Instance) -> SignedCheckpoint:
    """A checkpoint of the whole tree: the newest stored one, or one signed now if the tree grew since (a
    write: for the command line and POSTs, never a GET)."""
    with inst.db.read() as s:
        row = s.execute(select(CheckpointRow).order_by(CheckpointRow.size.desc()).limit(1)).scalar_one_or_none()
        current = event_count(s)
    if row is None or row.size < current:
        return make_checkpoint(inst)
    return SignedCheckpoint(row.size, bytes(row.root), row.note)


def checkpoints(inst: Instance, *, limit: int = 100) -> list[SignedCheckpoint]:
    with inst.db.read() as s:
        rows = s.execute(select(CheckpointRow).order_by(CheckpointRow.size.desc()).limit(limit)).scalars()
        return [SignedCheckpoint(r.size, bytes(r.root), r.note) for r in rows]


def _b64(hashes: list[bytes]) -> list[str]:
    return [base64.b64encode(h).decode() for h in hashes]


def inclusion(inst: Instance, index: int, size: int | None = None) -> dict[str, object]:
    """Inclusion proof of entry ``index`` in the tree of ``size`` (default: current), with the entry itself."""
    with inst.db.read() as s:
        n = _size(s, size)
        if not 0 <= index < n:
            raise InvalidRequest(f"entry {index} is not in a tree of size {n}", code="invalid_index")
        get = _reader(s)
        entry = s.execute(select(Event.entry).where(Event.seq == index + 1)).scalar_one()
        return {
            "index": index,
            "tree_size": n,
            "root": base64.b64encode(merkle.root(get, n)).decode(),
            "entry": bytes(entry).decode(),
            "leaf_hash": base64.b64encode(merkle.leaf_hash(bytes(entry))).decode(),
            "proof": _b64(merkle.inclusion_proof(get, index, n)),
        }


def index_of_unit(inst: Instance, *, serial: str | None = None, cert: str | None = None) -> int:
    """The ledger index of the event that issued a unit's certificate (by serial, certificate serial or SHA-256)."""
    with inst.db.read() as s:
        q = select(Unit)
        if serial is not None:
            q = q.where(Unit.serial == serial)
        elif cert is not None:
            by_hash = len(cert) == 64
            q = q.where((Unit.cert_sha256 if by_hash else Unit.cert_serial) == cert.lower())
        else:
            raise InvalidRequest("name a serial or a certificate")
        unit = s.execute(q.limit(1)).scalar_one_or_none()
        if unit is None:
            raise NotFound("no provisioned unit matches", code="unit_not_found")
        seq = s.execute(
            select(Event.seq).where(
                Event.kind == "unit.provisioned", Event.serial == unit.serial, Event.order_id == unit.order_id
            )
        ).scalar_one()
        return int(seq) - 1


def consistency(inst: Instance, first: int, second: int | None = None) -> dict[str, object]:
    with inst.db.read() as s:
        n = _size(s, second)
        if not 0 <= first <= n:
            raise InvalidRequest(f"first size {first} is outside 0..{n}", code="invalid_tree_size")
        get = _reader(s)
        return {
            "first": first,
            "second": n,
            "first_root": base64.b64encode(merkle.root(get, first)).decode(),
            "second_root": base64.b64encode(merkle.root(get, n)).decode(),
            "proof": _b64(merkle.consistency_proof(get, first, n)),
        }


def export(inst: Instance, out: Path, *, batch: int = 10_000) -> dict[str, object]:
    """Write what an auditor needs to verify offline into ``out`` (new or empty): entries, checkpoints, the
    verifier key, the CA certificates and each unit's current certificate (named as ``ledger.export_files``
    says: a serial never steers where a file is written)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise Conflict(f"{out} exists and is not an empty directory", code="export_target_exists")
    for _ in range(_RETRIES):
        manifest = _export_at_a_checkpoint(inst, out, batch)
        if manifest is not None:
            return manifest
    raise Conflict("units kept being re-enrolled while the export was made: try again", code="conflict")


def _export_at_a_checkpoint(inst: Instance, out: Path, batch: int) -> dict[str, object] | None:
    """One attempt: None if a unit's certificate changed after the checkpoint (its entry's is gone)."""
    final = make_checkpoint(inst)
    for folder in ("checkpoints", CERTS, "ca"):
        path_inside(out, folder).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(inst.cas.cert_path("root"), path_inside(out, "ca/root.pem"))
    with inst.db.read() as s:
        # Every CA that may have issued a genuine unit (a site agent's too), under the name the offline
        # verifiers read (ca/issuing-*.pem): an agent's synced units chain through its CA to the root.
        issuing = [(row.name, row.certificate_pem) for row in device_issuers(s)]
    for name, pem in issuing:
        path_inside(out, f"ca/issuing-{safe_file_name(name)}.pem").write_text(pem or "")
    path_inside(out, "ledger.pub").write_text(public_verifier_key(inst) + "\n")
    if len(ledger_keys.chain(inst)) > 1:  # rotated: how the key kept reaches the others (ledger.keychain)
        chain = json.dumps(ledger_keys.document(inst), indent=2, sort_keys=True)
        path_inside(out, KEYCHAIN_FILE).write_text(chain + "\n")
    issued = IssuedCertificates()
    written = 0
    with inst.db.read() as s, path_inside(out, "entries.jsonl").open("wb") as fh:
        last = 0
        while last < final.size:
            rows = s.execute(
                select(Event.seq, Event.entry)
                .where(Event.seq > last, Event.seq <= final.size)
                .order_by(Event.seq)
                .limit(batch)
            ).all()
            for seq, entry in rows:
                fh.write(bytes(entry) + b"\n")
                issued.see(seq - 1, bytes(entry))
                last = seq
                written += 1
        notes = s.execute(select(CheckpointRow.size, CheckpointRow.note).where(CheckpointRow.size <= final.size)).all()
        cosigned = cosignature_lines(s, final.size)
    for size, note in notes:
        path_inside(out, f"checkpoints/{size:012d}.txt").write_text(append_cosignatures(note, cosigned.get(size, [])))
    files = issued.files()
    if not _write_certificates(inst, out, files):
        return None
    path_inside(out, "README.txt").write_text(
        "FabGuard ledger export. Verify offline with: fabguard audit verify THIS_DIR --key YOUR_COPY_OF_ledger.pub\n"
        "entries.jsonl: one canonical entry per line (leaf i = SHA-256(0x00 || line i without its newline))\n"
        "certs/: each unit's current certificate, named after its serial (percent-encoded where it holds\n"
        "anything but letters, digits, '.', '_' and '-'); manifest.json maps each file to its unit\n"
    )
    manifest: dict[str, object] = {
        "format": EXPORT_FORMAT,
        "entries": written,
        "checkpoints": len(notes),
        "certificates": len(files),
        "tree_size": final.size,
        "certificate_files": file_map(files),
    }
    path_inside(out, "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _write_certificates(inst: Instance, out: Path, files: dict[str, IssuedUnit], chunk: int = 500) -> bool:
    """Write each unit's certificate the entries name; False (and none written) if one is no longer stored."""
    names = list(files)
    for start in range(0, len(names), chunk):
        wanted = {files[name].cert_sha256: name for name in names[start : start + chunk]}
        with inst.db.read() as s:
            rows = s.execute(
                select(Unit.cert_sha256, Unit.certificate_pem).where(Unit.cert_sha256.in_(list(wanted)))
            ).all()
        if len(rows) < len(wanted):  # re-enrolled since the checkpoint: another attempt, at a newer one
            for name in names[:start]:
                path_inside(out, name).unlink()
            return False
        for sha, pem in rows:
            with path_inside(out, wanted[sha]).open("x") as fh:  # "x": a name is never written twice
                fh.write(pem)
    return True


def cosignature_lines(s: Session, max_size: int | None = None) -> dict[int, list[str]]:
    """The stored cosignature lines per checkpoint size (in the order received)."""
    q = select(CosignatureRow.checkpoint_size, CosignatureRow.line).order_by(CosignatureRow.id)
    if max_size is not None:
        q = q.where(CosignatureRow.checkpoint_size <= max_size)
    found: dict[int, list[str]] = defaultdict(list)
    for size, line in s.execute(q).all():
        found[size].append(line)
    return dict(found)


def entry_count(inst: Instance) -> int:
    with inst.db.read() as s:
        return int(s.execute(select(func.count()).select_from(Event)).scalar_one())
