"""What the offline verifiers (:mod:`fabguard.ledger.verify`, :mod:`fabguard.ledger.pack`) share: the failure
they raise and how they check that a CA signed a certificate."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from fabguard.domain.errors import FabGuardError


class AuditFailure(FabGuardError):
    """The export does not verify; the message names the first thing found wrong and where."""

    code = "audit_failed"
    status = 422


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether ``issuer`` signed ``cert`` (names and signature); never raises for a mismatch."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def export_certificate(path: Path, what: str) -> x509.Certificate:
    """The PEM certificate in an export's file ``path`` (``what`` it is, for the failure's message)."""
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except ValueError:
        raise AuditFailure(f"{what} {path.name} cannot be parsed") from None


__all__ = ["AuditFailure", "export_certificate", "issued_by"]
