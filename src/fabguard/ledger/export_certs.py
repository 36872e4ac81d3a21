"""The offline verifier's check of an export's certificate files and of its manifest's map of them, against
the units the entries issued certificates to (:class:`fabguard.ledger.unit_index.UnitIndex`, on disk): each
unit's file holds its current certificate, chaining to an issuing CA of the root; no file is missing, extra,
duplicated or swapped (the first one wrong, in the order of the names, is named); the manifest maps each file
to its unit. Memory stays flat in the number of units: files are listed, read and compared a batch at a time.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from fabguard.domain.errors import InvalidRequest
from fabguard.ledger.audit_failure import AuditFailure, export_certificate, issued_by
from fabguard.ledger.export_files import CERTS
from fabguard.ledger.json_stream import NotAnObject, read_object
from fabguard.ledger.unit_index import UnitIndex, is_text, printable

MAP = "certificate_files"


def _load_issuers(directory: Path, root_ca: Path | None) -> dict[x509.Name, list[x509.Certificate]]:
    if root_ca is None:
        root = export_certificate(directory / "ca" / "root.pem", "the root CA certificate")
    else:
        try:
            root = x509.load_pem_x509_certificate(root_ca.read_bytes())
        except ValueError:
            raise InvalidRequest(f"the root CA certificate you trust, {root_ca}, is not a PEM certificate") from None
    issuers: dict[x509.Name, list[x509.Certificate]] = {}
    for path in sorted((directory / "ca").glob("issuing*.pem")):
        issuing = export_certificate(path, "the issuing CA certificate")
        try:
            issuing.verify_directly_issued_by(root)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise AuditFailure(
                f"the issuing CA {path.name} in the export is not signed by the root CA: {exc}"
            ) from None
        issuers.setdefault(issuing.subject, []).append(issuing)
    return issuers


def _listing(cert_dir: Path) -> Iterator[tuple[str, bool]]:
    """Each entry of ``certs/`` as ``certs/NAME``, and whether it is anything but a plain ``.pem`` file (a
    folder, whatever it holds, is one such entry)."""
    with os.scandir(cert_dir) as entries:
        for entry in entries:
            plain = entry.is_file(follow_symlinks=False) and entry.name.endswith(".pem") and entry.name != ".pem"
            if not is_text(entry.name):  # not UTF-8: no unit's file (their names are ASCII)
                yield f"{CERTS}/{printable(entry.name)}", True
            else:
                yield f"{CERTS}/{entry.name}", not plain


def _read_listing(directory: Path, index: UnitIndex) -> bool:
    """Whether the export has a ``certs/`` folder; its entries go to ``index``; anything there but a plain
    ``.pem`` file is named as not the export's."""
    cert_dir = directory / CERTS
    if not cert_dir.exists():
        return False
    if cert_dir.is_symlink() or not cert_dir.is_dir():
        raise AuditFailure(f"{CERTS} is not a folder of certificate files")
    index.add_present(_listing(cert_dir))
    added = index.first_added()
    if added is not None:
        raise AuditFailure(f"{added} is not a certificate file of this export: it was added")
    return True


def _misplaced(name: str, digest: str, index: UnitIndex) -> str:
    """Why the certificate with ``digest`` does not belong in file ``name``."""
    owner = index.recorded(digest)
    if owner is None:
        return f"certificate {name} (SHA-256 {digest[:16]}...) was never recorded in the ledger"
    if not index.current(owner):
        return f"{name} holds a certificate of {owner.describe()} that a re-enrolment superseded (entry {owner.index})"
    home = index.home(owner)
    there = index.file_of(name)
    if there is not None:
        return (
            f"{name} holds the certificate of {owner.describe()} (whose file is {home}), not that of "
            f"{there.describe()}: certificate files were swapped or copied"
        )
    return f"{name} is an extra file: it holds the certificate of {owner.describe()}, whose file is {home}"


def check_certificates(directory: Path, index: UnitIndex, root_ca: Path | None) -> int:
    """Each unit's file holds its current certificate, chaining to the CA; no file is missing or extra."""
    listed = _read_listing(directory, index)
    missing = index.first_missing()
    if missing is not None:
        name, unit = missing
        raise AuditFailure(
            f"{name} is missing: {unit.describe()} was issued certificate {unit.cert_sha256[:16]}... "
            f"(entry {unit.index})"
        )
    if not listed:
        return 0
    issuers: dict[x509.Name, list[x509.Certificate]] | None = None
    count = 0
    for name in index.present():
        if issuers is None:
            issuers = _load_issuers(directory, root_ca)
        cert = export_certificate(directory / name, "certificate")
        digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
        owner = index.file_of(name)
        if owner is None or owner.cert_sha256 != digest:
            raise AuditFailure(_misplaced(name, digest, index))
        if not any(issued_by(cert, ca) for ca in issuers.get(cert.issuer, [])):
            raise AuditFailure(f"certificate {name} does not chain to an issuing CA of the root") from None
        count += 1
    return count


def read_manifest(directory: Path, index: UnitIndex) -> tuple[dict[str, object], bool]:
    """The manifest's members but its map of certificate files, which goes to ``index``; and whether it held
    such a map (an object)."""
    try:
        with (directory / "manifest.json").open(encoding="utf-8-sig") as fh:
            return read_object(fh, MAP, index.map_file, index.clear_map)
    except OSError as exc:
        raise AuditFailure(f"the export's manifest.json cannot be read: {exc.strerror or exc}") from None
    except NotAnObject:
        raise AuditFailure("the export's manifest.json is not a JSON object") from None
    except (ValueError, RecursionError):
        raise AuditFailure("the export's manifest.json is not JSON") from None


__all__ = ["MAP", "check_certificates", "read_manifest"]
