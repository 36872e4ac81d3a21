"""Checking a site agent's log when it syncs: pure, values in, a verdict out.

The agent sends its whole log (its canonical entries), a checkpoint signed with the ledger key its lease
registered, and the certificates of the units it issued. The log must be exactly what the checkpoint signs
(else it was tampered with), must extend the log the central server accepted before (else it forked, or the
package is an old one replayed), must stay inside the lease (no more units than granted, none after its
end, none for another order), and every unit's certificate must be the agent CA's, for the key and serial
its entry names. Any failure is a :class:`SyncDiscrepancy` with its code.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from fabguard.domain.errors import FabGuardError
from fabguard.ledger import merkle
from fabguard.ledger.checkpoint import Checkpoint, CheckpointError, open_signed_checkpoint
from fabguard.ledger.entry import decode_entry
from fabguard.ledger.lease import Lease

PROVISIONED = "unit.provisioned"


class SyncDiscrepancy(FabGuardError):
    """The agent's log does not verify (``lease_sync_invalid``, ``lease_sync_tampered``)."""

    code = "lease_sync_invalid"
    status = 422


class SyncConflict(SyncDiscrepancy):
    """The agent's log does not fit its lease or what the server saw before (forked, replayed, beyond)."""

    code = "lease_sync_forked"
    status = 409


@dataclass(frozen=True, slots=True)
class SyncedUnit:
    """A unit the agent issued, checked against its entry: what the central server records."""

    index: int
    serial: str
    key_fingerprint: str
    cert_serial: str
    cert_sha256: str
    certificate_pem: str
    fixture_id: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class VerifiedSync:
    checkpoint: Checkpoint
    new_entries: list[dict[str, Any]]  # decoded, in index order, from the previously accepted size on
    new_units: list[SyncedUnit]
    units_total: int


def verify_sync(
    lease: Lease,
    agent_ca: x509.Certificate,
    entries: Sequence[bytes],
    checkpoint_note: str,
    certificates: Mapping[str, str],
    previous: tuple[int, bytes],
) -> VerifiedSync:
    """Check an agent's sync against its lease and the (size, root) accepted before; ``certificates`` maps
    a certificate's SHA-256 (hex) to its PEM."""
    try:
        cp = open_signed_checkpoint(checkpoint_note, lease.agent_ledger_key)
    except CheckpointError as exc:
        raise SyncDiscrepancy(
            code="lease_sync_invalid", message=f"the agent's checkpoint does not verify: {exc.message}"
        ) from None
    leaves = [merkle.leaf_hash(e) for e in entries]
    if len(entries) != cp.size or merkle.mth(leaves) != cp.root:
        raise SyncDiscrepancy(
            code="lease_sync_tampered",
            message=f"the {len(entries)} entries sent are not the log of size {cp.size} the agent signed",
        )
    done, done_root = previous
    if cp.size < done or (cp.size == done and cp.root == done_root and done > 0):
        raise SyncConflict(
            code="lease_sync_replayed",
            message=f"this log (size {cp.size}) is not newer than the one synced before (size {done})",
        )
    if merkle.mth(leaves[:done]) != done_root:
        raise SyncConflict(
            code="lease_sync_forked", message=f"the agent's log does not extend the log of size {done} it synced before"
        )
    decoded = [_decode(i, e) for i, e in enumerate(entries)]
    provisioned = [e for e in decoded if e["kind"] == PROVISIONED]
    if len(provisioned) > lease.units:
        raise SyncConflict(
            code="lease_units_beyond", message=f"the agent issued {len(provisioned)} units on a lease of {lease.units}"
        )
    for e in provisioned:
        at = datetime.fromisoformat(str(e["at"]).replace("Z", "+00:00"))
        if e.get("order_id") != lease.order_id or at > lease.not_after:
            raise SyncConflict(
                code="lease_units_beyond",
                message=f"entry {e['index']} issued unit {e.get('serial')} outside the lease's order or time",
            )
    new = decoded[done:]
    units = [_unit(e, agent_ca, certificates) for e in new if e["kind"] == PROVISIONED]
    return VerifiedSync(cp, new, units, len(provisioned))


def _decode(index: int, line: bytes) -> dict[str, Any]:
    try:
        e = decode_entry(line)
        if e.get("index") != index or not isinstance(e.get("kind"), str) or not isinstance(e.get("detail"), dict):
            raise ValueError(f"entry {index} names index {e.get('index')}")
    except ValueError as exc:
        raise SyncDiscrepancy(
            code="lease_sync_invalid", message=f"entry {index} is not a ledger entry: {exc}"
        ) from None
    return e


def _unit(e: Mapping[str, Any], agent_ca: x509.Certificate, certificates: Mapping[str, str]) -> SyncedUnit:
    detail = e["detail"]
    sha = str(detail.get("cert_sha256"))
    pem = certificates.get(sha)
    where = f"unit {e.get('serial')} (entry {e['index']})"
    if pem is None:
        raise SyncDiscrepancy(code="lease_sync_invalid", message=f"{where}: its certificate was not sent")
    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
        cert.verify_directly_issued_by(agent_ca)
    except (ValueError, TypeError, InvalidSignature):
        raise SyncDiscrepancy(
            code="lease_sync_invalid", message=f"{where}: the certificate is not the agent CA's"
        ) from None
    der = cert.public_bytes(serialization.Encoding.DER)
    key = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    serials = cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    if (
        hashlib.sha256(der).hexdigest() != sha
        or hashlib.sha256(key).hexdigest() != detail.get("key_fingerprint")
        or [a.value for a in serials] != [e.get("serial")]
    ):
        raise SyncDiscrepancy(
            code="lease_sync_invalid", message=f"{where}: the certificate is not the one its entry names"
        )
    return SyncedUnit(
        index=int(e["index"]),
        serial=str(e["serial"]),
        key_fingerprint=str(detail["key_fingerprint"]),
        cert_serial=format(cert.serial_number, "x"),
        cert_sha256=sha,
        certificate_pem=pem,
        fixture_id=e.get("fixture_id"),
        at=datetime.fromisoformat(str(e["at"]).replace("Z", "+00:00")),
    )
