"""Which certificate files a ledger export holds and what each is named, derived from the entries alone.

The writer (``service.ledger.export``) and the offline verifier (``ledger.verify``) both replay the
entries through :class:`IssuedCertificates`, so they agree on the files without trusting anything else
in the export: one file per unit, holding the unit's current certificate (``unit.provisioned``, then
each ``unit.reenrolled``), named ``certs/<serial>.pem`` with the serial made a safe file name
(:func:`fabguard.domain.filenames.safe_file_name`: percent-encoded where it holds anything but letters,
digits, ``.``, ``_`` and ``-``). Where two units' names would clash (one serial in two products, or two
serials that differ only in case, which a case-insensitive file system holds as one file), each of them
is named ``certs/<serial>~<first 16 hex digits of its certificate's SHA-256>.pem``.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass

from fabguard.domain.filenames import safe_file_name

EXPORT_FORMAT = "fabguard-ledger-export/2"
CERTS = "certs"
_PROVISIONED = b'"kind":"unit.provisioned"'
_REENROLLED = b'"kind":"unit.reenrolled"'  # a renewed certificate is recorded here, not in unit.provisioned
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class IssuedUnit:
    """A unit as the entries name it (its order and serial), with the certificate an entry last issued it."""

    order_id: str
    serial: str
    cert_sha256: str
    index: int  # the entry that issued that certificate

    def describe(self) -> str:
        return f"unit {self.serial} of order {self.order_id}"


class IssuedCertificates:
    """The certificates the entries issue, replayed one entry at a time, in memory (O(units): the export's
    writer; the offline verifier keeps the same on disk, :class:`fabguard.ledger.unit_index.UnitIndex`)."""

    def __init__(self) -> None:
        self._units: dict[tuple[str, str], IssuedUnit] = {}
        self.recorded: dict[str, IssuedUnit] = {}  # every certificate an entry issued -> its unit at that entry

    def see(self, index: int, line: bytes) -> None:
        """Take one entry's bytes (any entry: those that issue no certificate are skipped)."""
        issued = issuance(line)
        if issued is None:
            return
        provisioned, order_id, serial, sha = issued
        key = (order_id, serial)
        if provisioned or key in self._units:  # a re-enrolment counts for a unit already provisioned
            unit = IssuedUnit(order_id, serial, sha, index)
            self._units[key] = unit
            self.recorded[unit.cert_sha256] = unit

    def current(self, sha: str) -> bool:
        """Whether ``sha`` is a unit's current certificate (not one a re-enrolment superseded)."""
        unit = self.recorded.get(sha)
        return unit is not None and self._units[(unit.order_id, unit.serial)] == unit

    def files(self) -> dict[str, IssuedUnit]:
        """Each unit's certificate file (``certs/NAME.pem``), in the order of the names."""
        base = {key: safe_file_name(unit.serial) for key, unit in self._units.items()}
        shared = Counter(name.lower() for name in base.values())
        named = {}
        for key, unit in self._units.items():
            name = base[key] if shared[base[key].lower()] == 1 else f"{base[key]}~{unit.cert_sha256[:16]}"
            named[f"{CERTS}/{name}.pem"] = unit
        return dict(sorted(named.items()))


def issuance(line: bytes) -> tuple[bool, str, str, str] | None:
    """What one entry issues, if it issues a certificate: whether it provisions (else it re-enrols), the
    order, the serial and the certificate's SHA-256 (hex); None for any other entry or a malformed one."""
    if _PROVISIONED not in line and _REENROLLED not in line:
        return None
    try:
        entry = json.loads(line)
    except (ValueError, RecursionError):
        return None  # malformed: the tree's check names it
    if not isinstance(entry, dict) or not isinstance(entry.get("detail"), dict):
        return None
    kind, order_id, serial = entry.get("kind"), entry.get("order_id"), entry.get("serial")
    sha = entry["detail"].get("cert_sha256")
    if kind not in ("unit.provisioned", "unit.reenrolled"):
        return None
    if not (isinstance(order_id, str) and isinstance(serial, str) and serial and _is_sha256(sha)):
        return None
    return kind == "unit.provisioned", order_id, serial, str(sha)


def file_map(files: dict[str, IssuedUnit]) -> dict[str, dict[str, str]]:
    """What the export's manifest says of its certificate files: each one's unit."""
    return {name: {"serial": unit.serial, "order_id": unit.order_id} for name, unit in files.items()}


def _is_sha256(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and _HEX.issuperset(value)


__all__ = ["CERTS", "EXPORT_FORMAT", "IssuedCertificates", "IssuedUnit", "file_map", "issuance"]
