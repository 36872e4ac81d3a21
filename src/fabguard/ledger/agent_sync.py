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

from fabguard.domain.errors import FabGuardError, Refusal
from fabguard.domain.values import Serial
from fabguard.ledger import merkle
from fabguard.ledger.checkpoint import Checkpoint, CheckpointError, open_signed_checkpoint
from fabguard.ledger.entry import decode_entry
from fabguard.ledger.lease import Lease
from fabguard.ledger.lease_end import FINISHED

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
    fixture_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class VerifiedSync:
    checkpoint: Checkpoint
    new_entries: list[dict[str, Any]]  # decoded, in index order, from the previously accepted size on
    new_units: list[SyncedUnit]
    units_total: int
    resent: bool = False  # the very log accepted last, sent again (its answer was lost): nothing new


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
    if done > 0 and cp.size == done and cp.root == done_root:
        return VerifiedSync(cp, [], [], 0, resent=True)
    if cp.size < done:
        raise SyncConflict(
            code="lease_sync_replayed",
            message=f"this log (size {cp.size}) is older than the one synced before (size {done})",
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
        if e["order_id"] != lease.order_id or _time(e) > lease.not_after:
            raise SyncConflict(
                code="lease_units_beyond",
                message=f"entry {e['index']} issued unit {e.get('serial')} outside the lease's order or time",
            )
    finished = next((e["index"] for e in decoded if e["kind"] == FINISHED), None)
    if finished is not None and any(e["index"] > finished for e in provisioned):
        raise SyncConflict(
            code="lease_units_beyond", message=f"the agent issued units after it finished its lease (entry {finished})"
        )
    for e in decoded:
        if e["order_id"] is not None and e["order_id"] != lease.order_id:
            raise SyncDiscrepancy(
                code="lease_sync_invalid",
                message=f"entry {e['index']} ({e['kind']}) names order {e['order_id']!r}, not the lease's",
            )
    new = decoded[done:]
    units = [_unit(e, agent_ca, certificates) for e in new if e["kind"] == PROVISIONED]
    return VerifiedSync(cp, new, units, len(provisioned))


# Each field an entry names, the longest it may be (the central columns it lands in).
_FIELDS = {"kind": 40, "actor": 128, "order_id": 63, "fixture_id": 63, "serial": 64, "code": 40, "at": 40}
_UNIT_FIELDS = ("order_id", "fixture_id", "serial", "at")  # a unit.provisioned entry must name each


def _decode(index: int, line: bytes) -> dict[str, Any]:
    try:
        e = decode_entry(line)
        if e.get("index") != index or not isinstance(e.get("detail"), dict):
            raise ValueError(f"it names index {e.get('index')!r}, or its detail is not an object")
        for name, limit in _FIELDS.items():
            value = e.setdefault(name, None)
            if value is not None and (not isinstance(value, str) or not 0 < len(value) <= limit):
                raise ValueError(f"its {name} is not a string of 1-{limit} characters")
        if not isinstance(e["kind"], str):
            raise ValueError("it names no kind")
        if e["at"] is not None:
            _time(e)
        if e["kind"] == PROVISIONED:
            missing = [n for n in _UNIT_FIELDS if e[n] is None]
            missing += [n for n in ("key_fingerprint", "cert_sha256") if not _hex64(e["detail"].get(n))]
            if missing:
                raise ValueError(f"the unit it names has no valid {', '.join(missing)}")
            Serial(e["serial"])  # an identifier, never a path: the server names files after it
    except Refusal as exc:
        raise SyncDiscrepancy(code="lease_sync_invalid", message=f"entry {index}: {exc.message}") from None
    except ValueError as exc:
        raise SyncDiscrepancy(
            code="lease_sync_invalid", message=f"entry {index} is not a ledger entry: {exc}"
        ) from None
    return e


def _time(e: Mapping[str, Any]) -> datetime:
    """An entry's time: RFC 3339 with its offset (a time without one, or not a time, is a ValueError)."""
    at = datetime.fromisoformat(str(e["at"]).replace("Z", "+00:00"))
    if at.tzinfo is None:
        raise ValueError("its time names no UTC offset")
    return at


def _hex64(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


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
    cert_serial = format(cert.serial_number, "x")
    if len(cert_serial) > 48:
        raise SyncDiscrepancy(code="lease_sync_invalid", message=f"{where}: the certificate's serial is too long")
    return SyncedUnit(
        index=int(e["index"]),
        serial=str(e["serial"]),
        key_fingerprint=str(detail["key_fingerprint"]),
        cert_serial=cert_serial,
        cert_sha256=sha,
        certificate_pem=pem,
        fixture_id=str(e["fixture_id"]),
        at=_time(e),
    )
