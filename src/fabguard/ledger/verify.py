"""The offline auditor: verifies a ledger export with nothing but a public key.

Imports nothing from the server side (only ``cryptography``, the pure ledger modules and the error
root in ``fabguard.domain``), needs no database and no network. It recomputes the Merkle tree from
the entries in O(log n) memory, checks every checkpoint's signature and root, checks the auditor's
own saved checkpoints against the same tree (a fork or a rewrite of history shows as a different
root for a size already signed), and checks that every certificate in the export is in the ledger
and chains to the CA.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from fabguard.domain.errors import FabGuardError, InvalidRequest
from fabguard.ledger.checkpoint import Checkpoint, CheckpointError, open_signed_checkpoint, parse_verifier_key
from fabguard.ledger.entry import canonical_json
from fabguard.ledger.merkle import CompactRange

_INDEX_KEY = b',"index":'
_PROVISIONED = b'"kind":"unit.provisioned"'
_REENROLLED = b'"kind":"unit.reenrolled"'  # a renewed certificate is recorded here, not in unit.provisioned
_CERT_KEY = b'"cert_sha256":"'


class AuditFailure(FabGuardError):
    """The export does not verify; the message names the first thing found wrong and where."""

    code = "audit_failed"
    status = 422


@dataclass
class AuditReport:
    entries: int = 0
    root: bytes = b""
    checkpoints_checked: int = 0
    trusted_checked: int = 0
    certificates_checked: int = 0
    key_from_export: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Signed:
    checkpoint: Checkpoint
    source: str
    trusted: bool


def _top_level_index(line: bytes) -> int | None:
    """The entry's own ``index``: the last top-level key of that name (strings cannot hold an unescaped quote)."""
    at = line.rfind(_INDEX_KEY)
    if at < 0:
        return None
    start = at + len(_INDEX_KEY)
    end = start
    while end < len(line) and 48 <= line[end] <= 57:
        end += 1
    return int(line[start:end]) if end > start else None


def _entry_problem(line: bytes) -> str | None:
    """Why one entry is malformed on its own, or None."""
    try:
        value = json.loads(line)
    except ValueError:
        return "it is not valid JSON"
    if not isinstance(value, dict):
        return "it is not a JSON object"
    try:
        canonical = canonical_json(value)
    except ValueError:
        return "it holds values the canonical encoding does not allow"
    if canonical != line:
        return "it is not in canonical form (bytes were changed)"
    return None


def _load_signed(path: Path, verifier: str, trusted: bool) -> _Signed:
    try:
        cp = open_signed_checkpoint(path.read_text(encoding="utf-8"), verifier)
    except (CheckpointError, UnicodeDecodeError) as exc:
        raise AuditFailure(f"checkpoint {path.name}: {exc}") from None
    return _Signed(cp, path.name, trusted)


def verify_export(
    directory: Path,
    *,
    verifier: str | None = None,
    trusted_checkpoints: tuple[Path, ...] = (),
    root_ca: Path | None = None,
) -> AuditReport:
    """Verify an export made by ``fabguard ledger export``; raises AuditFailure on the first problem."""
    report = AuditReport()
    if verifier is None:
        try:
            verifier = (directory / "ledger.pub").read_text(encoding="utf-8").strip()
        except UnicodeDecodeError:
            raise AuditFailure("the export's verifier key ledger.pub is not text") from None
        report.key_from_export = True
        report.notes.append("the verifier key was taken from the export itself; pass the key you kept to trust nothing")
    signed = [_load_signed(p, verifier, False) for p in sorted((directory / "checkpoints").glob("*.txt"))]
    signed += [_load_signed(p, verifier, True) for p in trusted_checkpoints]
    if not signed:
        raise AuditFailure("the export holds no signed checkpoint")
    by_size: dict[int, _Signed] = {}
    for s in signed:
        other = by_size.get(s.checkpoint.size)
        if other is not None and other.checkpoint.root != s.checkpoint.root:
            raise AuditFailure(
                f"fork: checkpoints {other.source} and {s.source} are both validly signed for tree size "
                f"{s.checkpoint.size} but name different roots"
            )
        if other is None or s.trusted:
            by_size[s.checkpoint.size] = s
    wanted = set(by_size)
    roots: dict[int, bytes] = {}
    if 0 in wanted:
        roots[0] = CompactRange().root()
    tree = CompactRange()
    included: set[str] = set()
    # Certificate hashes are only collected when there are certificates to check: otherwise memory
    # stays O(log n) whatever the size of the log.
    collect = (directory / "certs").is_dir() and any((directory / "certs").glob("*.pem"))
    sha256 = hashlib.sha256
    with (directory / "entries.jsonl").open("rb") as fh:
        for i, raw in enumerate(fh):
            line = raw[:-1] if raw.endswith(b"\n") else raw
            if _top_level_index(line) != i:
                problem = _entry_problem(line)
                why = problem or f"its index field says {_top_level_index(line)}"
                raise AuditFailure(
                    f"entry {i}: {why}: entries were changed, deleted, inserted or reordered at this point"
                )
            if collect and (_PROVISIONED in line or _REENROLLED in line):
                at = line.find(_CERT_KEY)
                if at >= 0:
                    included.add(line[at + len(_CERT_KEY) : at + len(_CERT_KEY) + 64].decode("ascii", "replace"))
            tree.push(sha256(b"\x00" + line).digest())
            if tree.size in wanted:
                roots[tree.size] = tree.root()
    report.entries = tree.size
    report.root = tree.root()
    last_good = 0
    for size in sorted(by_size):
        s = by_size[size]
        if size > tree.size:
            raise AuditFailure(
                f"checkpoint {s.source} signs a tree of {size} entries but the export holds only {tree.size}: "
                "the log was truncated"
            )
        if roots[size] != s.checkpoint.root:
            where = _locate(directory, last_good, size)
            matched = f"entries 0..{last_good - 1} still match" if last_good else "no earlier checkpoint matches"
            kind = "your saved checkpoint" if s.trusted else "the signed checkpoint"
            raise AuditFailure(
                f"entries 0..{size - 1} do not hash to the root in {kind} {s.source} (size {size}); "
                f"{matched}, so the change lies in entries {last_good}..{size - 1}"
                f"{where}: history was rewritten or forked"
            )
        last_good = size
        if s.trusted:
            report.trusted_checked += 1
        else:
            report.checkpoints_checked += 1
    if last_good != tree.size:
        raise AuditFailure(
            f"entries {last_good}..{tree.size - 1} are not covered by any signed checkpoint: "
            "they were appended outside the ledger"
        )
    report.certificates_checked = _check_certificates(directory, included, root_ca)
    return report


def _locate(directory: Path, start: int, end: int) -> str:
    """Name the first entry in [start, end) that is malformed on its own, if any."""
    with (directory / "entries.jsonl").open("rb") as fh:
        for i, raw in enumerate(fh):
            if i >= end:
                break
            if i >= start:
                problem = _entry_problem(raw.rstrip(b"\n"))
                if problem:
                    return f" (entry {i}: {problem})"
    return ""


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether ``issuer`` signed ``cert`` (names and signature); never raises for a mismatch."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _export_certificate(path: Path, what: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except ValueError:
        raise AuditFailure(f"{what} {path.name} cannot be parsed") from None


def _check_certificates(directory: Path, included: set[str], root_ca: Path | None) -> int:
    cert_dir = directory / "certs"
    if not cert_dir.is_dir():
        return 0
    if root_ca is None:
        root = _export_certificate(directory / "ca" / "root.pem", "the root CA certificate")
    else:
        try:
            root = x509.load_pem_x509_certificate(root_ca.read_bytes())
        except ValueError:
            raise InvalidRequest(f"the root CA certificate you trust, {root_ca}, is not a PEM certificate") from None
    issuers: dict[x509.Name, list[x509.Certificate]] = {}
    for path in sorted((directory / "ca").glob("issuing*.pem")):
        issuing = _export_certificate(path, "the issuing CA certificate")
        try:
            issuing.verify_directly_issued_by(root)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise AuditFailure(
                f"the issuing CA {path.name} in the export is not signed by the root CA: {exc}"
            ) from None
        issuers.setdefault(issuing.subject, []).append(issuing)
    count = 0
    for path in sorted(cert_dir.glob("*.pem")):
        cert = _export_certificate(path, "certificate")
        digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
        if digest not in included:
            raise AuditFailure(f"certificate {path.name} (SHA-256 {digest[:16]}...) was never recorded in the ledger")
        if not any(issued_by(cert, ca) for ca in issuers.get(cert.issuer, [])):
            raise AuditFailure(f"certificate {path.name} does not chain to an issuing CA of the root") from None
        count += 1
    return count


def verify_report(path: Path, verifier: str) -> str:
    """Check a report's (or a device manifest's) signature by the ledger key: ``report.json`` (embedded) or a
    file with ``.sig`` beside it."""
    _, _, public_key = parse_verifier_key(verifier)
    try:
        if path.suffix == ".json":
            doc = json.loads(path.read_text())
            # A report signs its "report"; a device manifest (fabguard handoff manifest) its "manifest".
            message = canonical_json(doc["manifest"] if "manifest" in doc else doc["report"])
            signature = base64.b64decode(doc["signature"], validate=True)
        else:
            message = path.read_bytes()
            signature = base64.b64decode(Path(str(path) + ".sig").read_text().strip(), validate=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AuditFailure(f"cannot read the report or its signature: {exc}") from None
    try:
        public_key.verify(signature, message)
    except InvalidSignature:
        raise AuditFailure(
            f"the signature on {path.name} does not verify: the report was altered or not issued by this ledger"
        ) from None
    return path.name
