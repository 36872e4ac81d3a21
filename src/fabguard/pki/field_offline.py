"""A field check from exported data alone (``fabguard ledger export``): no server, no database.

The trusted CAs are the export's ``ca/issuing-*.pem``; the units, their keys, certificates and
revocations are replayed from ``entries.jsonl`` (``unit.provisioned``, ``unit.reenrolled``,
``unit.revoked``, ``ca.revoked``). Verify the export itself first (``fabguard audit verify``; the CLI
does both) so that what is replayed here is the signed history. Offline there is no server nonce: the
verifier makes its own, gives it to the device and passes it here, so freshness is the verifier's
own; and revocations are those up to the export.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from cryptography import x509

from fabguard.domain.errors import InvalidRequest
from fabguard.domain.field import UnitRecord, Verdict, decide
from fabguard.pki.field import TrustedCa, check_facts, subject_serial


@dataclass(frozen=True, slots=True)
class ExportedFacts:
    """What an export says about our CAs and units."""

    cas: tuple[TrustedCa, ...]
    units: dict[str, list[UnitRecord]]  # serial -> its units (one per product, normally one)


def load_export(directory: Path) -> ExportedFacts:
    """Read the issuing CAs and replay the unit history of an export directory."""
    entries = directory / "entries.jsonl"
    if not entries.is_file():
        raise InvalidRequest(f"{directory} is not a ledger export (no entries.jsonl)", code="invalid_format")
    by_key: dict[tuple[str, str], UnitRecord] = {}
    revoked_cas: set[str] = set()
    with entries.open("rb") as fh:
        for raw in fh:
            try:
                e = json.loads(raw)
            except ValueError:
                raise InvalidRequest("entries.jsonl holds a line that is not JSON", code="invalid_format") from None
            kind, serial, order, d = e.get("kind"), e.get("serial"), e.get("order_id"), e.get("detail") or {}
            if kind == "ca.revoked":
                revoked_cas.add(str(d.get("ca")))
            if not isinstance(serial, str) or not isinstance(order, str):
                continue
            key = (serial, order)
            if kind == "unit.provisioned":
                by_key[key] = UnitRecord(serial, order, str(d.get("key_fingerprint")), str(d.get("cert_sha256")), False)
            elif kind == "unit.reenrolled" and key in by_key:
                by_key[key] = replace(
                    by_key[key], key_fingerprint=str(d.get("key_fingerprint")), cert_sha256=str(d.get("cert_sha256"))
                )
            elif kind == "unit.revoked" and key in by_key:
                by_key[key] = replace(by_key[key], revoked=True)
    cas = []
    for path in sorted((directory / "ca").glob("issuing-*.pem")):
        name = path.stem.removeprefix("issuing-")
        try:
            cert = x509.load_pem_x509_certificate(path.read_bytes())
        except ValueError:
            raise InvalidRequest(f"the export's CA certificate {path.name} is not PEM", code="invalid_format") from None
        cas.append(TrustedCa(name, cert, name in revoked_cas))
    units: dict[str, list[UnitRecord]] = {}
    for record in by_key.values():
        units.setdefault(record.serial, []).append(record)
    return ExportedFacts(tuple(cas), units)


def verify_offline(
    facts: ExportedFacts, leaf: x509.Certificate, nonce: bytes, signature: bytes, now: datetime
) -> Verdict:
    """The verdict the server would give, from the export's facts (without the nonce's freshness)."""
    units = facts.units.get(subject_serial(leaf) or "", [])
    return decide(check_facts(leaf, facts.cas, units, nonce, signature, now))
