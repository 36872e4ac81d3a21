"""The offline verifier of a CRA evidence pack (``fabguard compliance export``).

Pure: it reads the pack's files and a verifier key, needs no database, no network and nothing of the
server's side. The SBOM check is passed in (``sbom_check``, the CLI gives it the CycloneDX schema
validator), so this module stays free of the firmware package. Raises :class:`AuditFailure` naming the
first thing found wrong: the manifest's signature, a file's digest, a file missing or added, the
checkpoint's signature or its binding to the manifest, an inclusion proof, an SBOM, or an inventory
row that disagrees with its certificate or the history.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from fabguard.ledger.checkpoint import CheckpointError
from fabguard.ledger.keychain import KEYCHAIN_FILE, LedgerKey, keys_for, open_checkpoint, verifies
from fabguard.ledger.merkle import ProofError, leaf_hash, verify_inclusion
from fabguard.ledger.verify import AuditFailure, issued_by

PACK_FORMAT = "fabguard-compliance-pack/1"
MANIFEST = "manifest.json"
MANIFEST_SIGNATURE = "manifest.sig"
# The ledger entries a pack's history holds.
HISTORY_KINDS = (
    "unit.provisioned",
    "unit.reenrolled",
    "unit.revoked",
    "ca.created",
    "ca.csr_created",
    "ca.imported",
    "ca.rotated",
    "ca.revoked",
    "firmware.uploaded",
    "firmware.approved",
    "firmware.attached",
    "firmware.withdrawn",
    "product.compliance_set",
    "product.identities_set",
    "identity.allocated",
)
IDENTITY_FIELDS = ("serial_index", "mac_addresses", "matter")


@dataclass
class PackReport:
    files: int = 0
    certificates: int = 0
    history: int = 0
    sboms: int = 0
    cas: int = 0
    tree_size: int = 0
    key_from_pack: bool = False
    notes: list[str] = field(default_factory=list)


def file_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def is_compliance_pack(directory: Path) -> bool:
    """A directory holding a compliance pack's manifest or its signature (not a ledger export)."""
    if (directory / MANIFEST_SIGNATURE).is_file():
        return True
    try:
        return PACK_FORMAT.encode() in (directory / MANIFEST).read_bytes()[:4096]
    except OSError:
        return False


def _json(directory: Path, name: str) -> Any:
    try:
        return json.loads((directory / name).read_bytes())
    except (OSError, ValueError) as exc:
        raise AuditFailure(f"{name} cannot be read as JSON: {exc}") from None


def _pack_keys(directory: Path, verifier: str) -> tuple[LedgerKey, ...]:
    """The key kept, and the keys the log's published chain links to it if the pack carries one (a rotation)."""
    path = directory / KEYCHAIN_FILE
    try:
        return keys_for(verifier, json.loads(path.read_bytes()) if path.exists() else None)
    except (OSError, ValueError, CheckpointError) as exc:
        raise AuditFailure(f"{KEYCHAIN_FILE}: {exc}") from None


def _check_manifest(directory: Path, keys: tuple[LedgerKey, ...]) -> tuple[dict[str, Any], bytes]:
    try:
        manifest_bytes = (directory / MANIFEST).read_bytes()
        signature = base64.b64decode((directory / MANIFEST_SIGNATURE).read_bytes().strip(), validate=True)
    except FileNotFoundError as exc:
        raise AuditFailure(f"{Path(str(exc.filename)).name} is missing: the pack is not signed") from None
    except (OSError, binascii.Error) as exc:
        raise AuditFailure(f"the manifest signature cannot be read: {exc}") from None
    if not verifies(manifest_bytes, signature, keys):
        raise AuditFailure(
            "the signature on manifest.json does not verify with this ledger key: the manifest was altered "
            "or the pack was not signed by this ledger"
        )
    try:
        manifest = json.loads(manifest_bytes)
    except ValueError:
        raise AuditFailure("manifest.json is signed but is not JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != PACK_FORMAT:
        raise AuditFailure(f"manifest.json is not a {PACK_FORMAT} manifest")
    return manifest, manifest_bytes


def _check_files(directory: Path, listed: dict[str, str]) -> None:
    for name in listed:
        p = PurePosixPath(name)
        if p.is_absolute() or ".." in p.parts or name in (MANIFEST, MANIFEST_SIGNATURE):
            raise AuditFailure(f"the manifest names a file outside the pack: {name!r}")
    for part in directory.rglob("*"):
        # A pack holds plain files and folders only: a link (to /dev/zero, a FIFO, a file elsewhere) would
        # make the verifier read something the manifest never described.
        if part.is_symlink() or not (part.is_file() or part.is_dir()):
            raise AuditFailure(f"{part.relative_to(directory).as_posix()} is not a plain file: a pack holds files only")
    present = {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()} - {
        MANIFEST,
        MANIFEST_SIGNATURE,
    }
    for name in sorted(set(listed) - present):
        raise AuditFailure(f"{name} is listed in the signed manifest but missing from the pack")
    for name in sorted(present - set(listed)):
        raise AuditFailure(f"{name} is in the pack but not in the signed manifest: it was added")
    for name, digest in sorted(listed.items()):
        actual = file_digest((directory / name).read_bytes())
        if actual != digest:
            raise AuditFailure(
                f"{name} was altered: its SHA-256 is {actual[:16]}..., the signed manifest says {digest[:16]}..."
            )


def _check_history(
    directory: Path, size: int, root: bytes, identities: dict[tuple[str, str], dict[str, Any]]
) -> tuple[set[str], dict[tuple[str, str], str], int]:
    """The certificates issued and revoked by the history's entries (``identities`` filled with the units'
    identities as their ``identity.allocated`` entries say), once each entry's proof verifies."""
    issued: set[str] = set()
    revoked: dict[tuple[str, str], str] = {}
    count = 0
    for n, raw in enumerate((directory / "history.jsonl").read_bytes().splitlines(), 1):
        try:
            line = json.loads(raw)
            entry_bytes = line["entry"].encode()
            entry = json.loads(entry_bytes)
            proof = [base64.b64decode(h, validate=True) for h in line["proof"]]
            index = int(line["index"])
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
            raise AuditFailure(f"history.jsonl line {n} is malformed: {exc}") from None
        if entry.get("index") != index:
            raise AuditFailure(f"history.jsonl line {n}: the entry says index {entry.get('index')}, not {index}")
        try:
            verify_inclusion(leaf_hash(entry_bytes), index, size, proof, root)
        except ProofError as exc:
            raise AuditFailure(
                f"history.jsonl line {n} (entry {index}) is not in the checkpoint's tree: {exc}"
            ) from None
        detail = entry.get("detail") or {}
        if entry.get("kind") in ("unit.provisioned", "unit.reenrolled") and "cert_sha256" in detail:
            issued.add(str(detail["cert_sha256"]))
        elif entry.get("kind") == "unit.revoked":
            revoked[(str(entry.get("serial")), str(detail.get("cert_serial")))] = str(detail.get("reason"))
        elif entry.get("kind") == "identity.allocated":
            key = (str(detail.get("product_id")), str(entry.get("serial")))
            identities[key] = {k: detail.get(k) for k in IDENTITY_FIELDS}
        count += 1
    return issued, revoked, count


def _part(directory: Path, parts: Collection[str], name: object, what: str) -> Path:
    """A file the pack's JSON names: one of the files its signed manifest lists, never a path out of the pack."""
    if not isinstance(name, str) or name not in parts:
        raise AuditFailure(f"{what} {name!r} is not a file of the pack (its signed manifest lists no such file)")
    return directory / name


def _load_cert(directory: Path, parts: Collection[str], name: object, what: str) -> x509.Certificate:
    path = _part(directory, parts, name, what)
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        raise AuditFailure(f"{what} {name} cannot be read as a PEM certificate") from None


def _check_cas(directory: Path, parts: Collection[str]) -> tuple[dict[x509.Name, list[x509.Certificate]], int]:
    by_subject: dict[x509.Name, list[x509.Certificate]] = {}
    facts = _json(directory, "ca/hierarchy.json")
    for ca in facts:
        if not ca.get("certificate"):
            continue
        cert = _load_cert(directory, parts, ca["certificate"], f"the certificate of CA {ca.get('name')!r},")
        if cert.subject.rfc4514_string() != ca.get("subject"):
            raise AuditFailure(
                f"ca/hierarchy.json: CA {ca.get('name')!r} names a subject its certificate does not have"
            )
        by_subject.setdefault(cert.subject, []).append(cert)
    for subject, certs in by_subject.items():
        for cert in certs:
            if not any(issued_by(cert, parent) for parent in by_subject.get(cert.issuer, [])):
                raise AuditFailure(f"CA certificate {subject.rfc4514_string()} is not signed by a CA of the pack")
    return by_subject, len(facts)


def _check_inventory(
    directory: Path,
    parts: Collection[str],
    generated_at: str,
    cas: dict[x509.Name, list[x509.Certificate]],
    issued: set[str],
    revoked: dict[tuple[str, str], str],
    identities: dict[tuple[str, str], dict[str, Any]],
) -> int:
    rows = _json(directory, "certificates/inventory.json")
    named = {row.get("certificate") for row in rows}
    for p in sorted((directory / "certificates").glob("*.pem")):
        if f"certificates/{p.name}" not in named:
            raise AuditFailure(f"certificates/{p.name} is not in the inventory")
    for row in rows:
        where = f"inventory row {row.get('serial')!r}"
        cert = _load_cert(directory, parts, row.get("certificate"), f"{where}: certificate")
        digest = file_digest(cert.public_bytes(serialization.Encoding.DER))
        if digest != row.get("cert_sha256") or format(cert.serial_number, "x") != row.get("cert_serial"):
            raise AuditFailure(f"{where} does not match its certificate (SHA-256 or serial differ)")
        if digest not in issued:
            raise AuditFailure(f"{where}: certificate {digest[:16]}... has no issuance entry in the history")
        if not any(issued_by(cert, ca) for ca in cas.get(cert.issuer, [])):
            raise AuditFailure(f"{where}: the certificate does not chain to a CA of the pack")
        reason = revoked.get((str(row.get("serial")), str(row.get("cert_serial"))))
        not_after = cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        expected = "revoked" if reason else ("expired" if not_after < generated_at else "active")
        if row.get("status") != expected or (reason and row.get("revocation_reason") != reason):
            raise AuditFailure(
                f"{where} says {row.get('status')!r} (reason {row.get('revocation_reason')!r}) but the certificate "
                f"and history say {expected!r}" + (f" (reason {reason!r})" if reason else "")
            )
        if row.get("identity") != identities.get((str(row.get("product_id")), str(row.get("serial")))):
            raise AuditFailure(f"{where}: its identity is not the one the history allocated")
    return len(rows)


def _check_sboms(directory: Path, parts: Collection[str], sbom_check: Callable[[Any], None]) -> int:
    releases = _json(directory, "firmware/releases.json")
    named = {r.get("sbom") for r in releases}
    count = 0
    for p in sorted((directory / "firmware").glob("*.cdx.json")):
        name = f"firmware/{p.name}"
        if name not in named:
            raise AuditFailure(f"{name} belongs to no release in firmware/releases.json")
    for r in releases:
        data = _part(directory, parts, r.get("sbom"), f"the SBOM of release {r.get('release_id')},").read_bytes()
        try:
            sbom_check(json.loads(data))
        except ValueError as exc:  # InvalidSbom is a ValueError, as is a JSON error
            raise AuditFailure(
                f"the SBOM {r.get('sbom')} of release {r.get('release_id')} is not valid: {exc}"
            ) from None
        manifest = str(r.get("manifest"))
        _check_release_signature(directory, r.get("release_id"), manifest, str(r.get("manifest_signature")))
        signed = json.loads(manifest)
        if signed.get("sbom_sha256") != file_digest(data):
            raise AuditFailure(f"the SBOM {r.get('sbom')} is not the one its release manifest signed")
        if (signed.get("release_id"), signed.get("sha256")) != (r.get("release_id"), r.get("sha256")):
            raise AuditFailure(f"release {r.get('release_id')}: its signed manifest names another release or image")
        count += 1
    return count


_COMPLIANCE_FIELDS = ("support_until", "vulnerability_contact")


def _check_products(directory: Path, index: dict[str, Any]) -> list[str]:
    """A product without its CRA facts is in a pack only if the index records that it was exported so
    (``--allow-incomplete``); each one recorded is a note."""
    missing = {
        str(p.get("id")): [f for f in _COMPLIANCE_FIELDS if not p.get(f)] for p in _json(directory, "products.json")
    }
    missing = {pid: fields for pid, fields in missing.items() if fields}
    recorded = (index.get("incomplete") or {}).get("products") or {}
    for pid, fields in sorted(missing.items()):
        if recorded.get(pid) != fields:
            raise AuditFailure(
                f"products.json: product {pid!r} lacks {', '.join(fields)}, and index.json does not record "
                "that the pack was exported incomplete"
            )
    for pid in sorted(set(recorded) - set(missing)):
        raise AuditFailure(f"index.json records product {pid!r} as incomplete, but products.json says otherwise")
    return [
        f"exported with --allow-incomplete: product {pid} has no {', '.join(fields)} (no evidence of its "
        "support period or vulnerability handling)"
        for pid, fields in sorted(missing.items())
    ]


def _check_release_signature(directory: Path, release_id: object, manifest: str, signature_b64: str) -> None:
    """A release manifest's signature by the firmware key (ECDSA P-256 with SHA-256, or Ed25519)."""
    try:
        public = serialization.load_pem_public_key((directory / "firmware/signing-key.pem").read_bytes())
        signature = base64.b64decode(signature_b64, validate=True)
        if isinstance(public, ed25519.Ed25519PublicKey):
            public.verify(signature, manifest.encode())
        elif isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(signature, manifest.encode(), ec.ECDSA(hashes.SHA256()))
        else:
            raise AuditFailure("firmware/signing-key.pem is neither an EC nor an Ed25519 key")
    except (OSError, ValueError, binascii.Error, InvalidSignature):
        raise AuditFailure(
            f"release {release_id}: its manifest signature does not verify with the firmware key"
        ) from None


def verify_pack(directory: Path, *, verifier: str | None, sbom_check: Callable[[Any], None]) -> PackReport:
    """Verify a compliance pack offline; raises AuditFailure on the first problem found."""
    report = PackReport()
    if verifier is None:
        try:
            verifier = (directory / "ledger.pub").read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            raise AuditFailure("the pack's ledger.pub cannot be read; pass the key you kept with --key") from None
        report.key_from_pack = True
        report.notes.append("the verifier key was taken from the pack itself; pass the key you kept to trust nothing")
    keys = _pack_keys(directory, verifier)
    manifest, _ = _check_manifest(directory, keys)
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise AuditFailure("manifest.json lists no files")
    try:
        _check_files(directory, files)
    except OSError as exc:
        raise AuditFailure(f"the pack's files cannot be read: {exc}") from None
    report.files = len(files)
    try:
        cp = open_checkpoint((directory / "checkpoint.txt").read_text(encoding="utf-8"), keys)
    except (CheckpointError, UnicodeDecodeError) as exc:
        raise AuditFailure(f"checkpoint.txt: {exc}") from None
    bound = manifest.get("checkpoint") or {}
    if (bound.get("size"), bound.get("root")) != (cp.size, base64.b64encode(cp.root).decode()):
        raise AuditFailure("the signed manifest is bound to another checkpoint than checkpoint.txt")
    report.tree_size = cp.size
    try:
        _check_contents(directory, manifest, cp.size, cp.root, sbom_check, report)
    except (OSError, TypeError, AttributeError, KeyError, ValueError) as exc:
        raise AuditFailure(f"the pack's contents are malformed: {type(exc).__name__}: {exc}") from None
    return report


def _check_contents(
    directory: Path,
    manifest: dict[str, Any],
    size: int,
    root: bytes,
    sbom_check: Callable[[Any], None],
    report: PackReport,
) -> None:
    parts = frozenset(manifest["files"])
    identities: dict[tuple[str, str], dict[str, Any]] = {}
    issued, revoked, report.history = _check_history(directory, size, root, identities)
    cas, report.cas = _check_cas(directory, parts)
    generated = str(manifest.get("generated_at"))
    report.certificates = _check_inventory(directory, parts, generated, cas, issued, revoked, identities)
    report.sboms = _check_sboms(directory, parts, sbom_check)
    index = _json(directory, "index.json")
    report.notes.extend(_check_products(directory, index))
    for part in index.get("parts", []):
        name = str(part.get("part"))
        if not any(f == name or f.startswith(name) for f in [*manifest["files"], MANIFEST]):
            raise AuditFailure(f"index.json names a part the pack does not hold: {name}")


__all__ = [
    "HISTORY_KINDS",
    "MANIFEST",
    "MANIFEST_SIGNATURE",
    "PACK_FORMAT",
    "PackReport",
    "file_digest",
    "is_compliance_pack",
    "verify_pack",
]
