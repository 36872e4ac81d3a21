"""The offline auditor: verifies a ledger export with nothing but a public key.

Imports nothing from the server side (only ``cryptography``, the pure ledger modules and the error
root in ``fabguard.domain``), needs no database and no network. It recomputes the Merkle tree from
the entries in O(log n) memory, checks every checkpoint's signature and root, checks the auditor's
own saved checkpoints against the same tree (a fork or a rewrite of history shows as a different
root for a size already signed), checks the export's certificate files against the units the entries
issued (one file per unit, named as :mod:`fabguard.ledger.export_files` says, holding the unit's current
certificate, chaining to the CA: a missing, extra, duplicated or swapped file fails and is named), and
checks the figures of its manifest against what it verified.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

# Imported from here by the CLI and the CRA pack's verifier.
from fabguard.ledger.audit_failure import AuditFailure as AuditFailure
from fabguard.ledger.audit_failure import issued_by as issued_by
from fabguard.ledger.checkpoint import Checkpoint, CheckpointError
from fabguard.ledger.entry import canonical_json
from fabguard.ledger.export_certs import MAP, check_certificates, read_manifest
from fabguard.ledger.export_files import EXPORT_FORMAT
from fabguard.ledger.keychain import KEYCHAIN_FILE, LedgerKey, keys_for, open_checkpoint, verifies
from fabguard.ledger.merkle import CompactRange
from fabguard.ledger.unit_index import UnitIndex

_INDEX_KEY = b',"index":'


@dataclass
class AuditReport:
    entries: int = 0
    root: bytes = b""
    checkpoints_checked: int = 0
    trusted_checked: int = 0
    checkpoint_files: int = 0  # the export's own signed checkpoints, each one checked
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


def _load_signed(path: Path, keys: tuple[LedgerKey, ...], trusted: bool) -> _Signed:
    try:
        cp = open_checkpoint(path.read_text(encoding="utf-8"), keys)
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
        verifier = _export_verifier(directory, report)
    by_size = _checkpoints_by_size(directory, verifier, trusted_checkpoints, report)
    with UnitIndex() as index:  # the tree takes O(log n) memory; the units are kept on disk
        tree, roots = _hash_entries(directory, set(by_size), index)
        report.entries = tree.size
        report.root = tree.root()
        _match_checkpoints(directory, by_size, roots, tree.size, report)
        report.certificates_checked = check_certificates(directory, index, root_ca)
        _check_manifest(directory, report, index)
    return report


def _export_verifier(directory: Path, report: AuditReport) -> str:
    """The verifier key the export carries (``ledger.pub``), noted in the report as trusting the export."""
    try:
        verifier = (directory / "ledger.pub").read_text(encoding="utf-8").strip()
    except UnicodeDecodeError:
        raise AuditFailure("the export's verifier key ledger.pub is not text") from None
    report.key_from_export = True
    report.notes.append("the verifier key was taken from the export itself; pass the key you kept to trust nothing")
    return verifier


def _checkpoints_by_size(
    directory: Path, verifier: str, trusted_checkpoints: tuple[Path, ...], report: AuditReport
) -> dict[int, _Signed]:
    """The export's signed checkpoints and the auditor's own, one per tree size (the auditor's when both
    exist); two validly signed for one size with different roots are a fork."""
    keys = _keys(directory, verifier, report)
    signed = [_load_signed(p, keys, False) for p in sorted((directory / "checkpoints").glob("*.txt"))]
    report.checkpoint_files = len(signed)
    signed += [_load_signed(p, keys, True) for p in trusted_checkpoints]
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
    return by_size


def _keys(directory: Path, verifier: str, report: AuditReport) -> tuple[LedgerKey, ...]:
    """The checkpoint keys to trust: the one kept, and, if the log rotated its key, the others its published
    chain (``ledger-keys.json``) links to it."""
    path = directory / KEYCHAIN_FILE
    try:
        document = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
        keys = keys_for(verifier, document)
    except (ValueError, UnicodeDecodeError, CheckpointError) as exc:
        raise AuditFailure(f"{KEYCHAIN_FILE}: {exc}") from None
    if len(keys) > 1:
        report.notes.append(f"the log rotated its key: {len(keys)} keys trusted through {KEYCHAIN_FILE}")
    return keys


def _hash_entries(directory: Path, wanted: set[int], issued: UnitIndex) -> tuple[CompactRange, dict[int, bytes]]:
    """The Merkle tree of the entries, in order, and its root at each ``wanted`` size; each entry is
    shown to ``issued``."""
    roots: dict[int, bytes] = {}
    if 0 in wanted:
        roots[0] = CompactRange().root()
    tree = CompactRange()
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
            issued.see(i, line)
            tree.push(sha256(b"\x00" + line).digest())
            if tree.size in wanted:
                roots[tree.size] = tree.root()
    return tree, roots


def _match_checkpoints(
    directory: Path, by_size: dict[int, _Signed], roots: dict[int, bytes], entries: int, report: AuditReport
) -> None:
    """Every checkpoint names the root of the entries up to its size, and together they cover every entry."""
    last_good = 0
    for size in sorted(by_size):
        s = by_size[size]
        if size > entries:
            raise AuditFailure(
                f"checkpoint {s.source} signs a tree of {size} entries but the export holds only {entries}: "
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
    if last_good != entries:
        raise AuditFailure(
            f"entries {last_good}..{entries - 1} are not covered by any signed checkpoint: "
            "they were appended outside the ledger"
        )


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


def _check_manifest(directory: Path, report: AuditReport, index: UnitIndex) -> None:
    """The manifest's figures are what was verified (an edited or stale manifest misleads a reader)."""
    manifest, has_map = read_manifest(directory, index)
    verified = (
        ("entries", report.entries, "manifest.json says {} entries, but the export holds {}"),
        ("tree_size", report.entries, "manifest.json says a tree of {} entries, but the newest checkpoint signs {}"),
        ("checkpoints", report.checkpoint_files, "manifest.json says {} checkpoints, but the export holds {}"),
        ("certificates", report.certificates_checked, "manifest.json says {} certificates, but {} were verified"),
    )
    for key, value, message in verified:
        said = manifest.get(key)
        if type(said) is not int or said != value:
            raise AuditFailure(message.format(json.dumps(said), value))
    mapped = manifest.get("format") == EXPORT_FORMAT or has_map or MAP in manifest  # older exports map none
    if mapped and not (has_map and index.map_matches()):
        raise AuditFailure("manifest.json maps its certificate files to other units than the entries issued them to")


def verify_report(path: Path, verifier: str, chain: dict[str, object] | None = None) -> str:
    """Check a report's (or a device manifest's) signature by the ledger key: ``report.json`` (embedded) or a
    file with ``.sig`` beside it. ``chain``, the log's published key chain, lets a report signed after a key
    rotation verify with the key kept from before it (or the other way round)."""
    try:
        keys = keys_for(verifier, chain)
    except CheckpointError as exc:
        raise AuditFailure(str(exc)) from None
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
    if not verifies(message, signature, keys):
        raise AuditFailure(
            f"the signature on {path.name} does not verify: the report was altered or not issued by this ledger"
        )
    return path.name
