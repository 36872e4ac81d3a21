"""Certificate revocation lists (RFC 5280 section 5), signed by the CA that issued the certificates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509

from fabguard.pki.profiles import Issuer, hash_for

# RFC 5280 5.3.1: "unspecified" should not be sent, so it maps to no reasonCode extension at all.
REASONS: dict[str, x509.ReasonFlags | None] = {
    "unspecified": None,
    "key_compromise": x509.ReasonFlags.key_compromise,
    "ca_compromise": x509.ReasonFlags.ca_compromise,
    "affiliation_changed": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessation_of_operation": x509.ReasonFlags.cessation_of_operation,
}


@dataclass(frozen=True, slots=True)
class RevokedEntry:
    serial_number: int
    revoked_at: datetime
    reason: str = "unspecified"


def crl_builder(
    signer: x509.Certificate, *, number: int, now: datetime, valid_for: timedelta
) -> x509.CertificateRevocationListBuilder:
    """What every CRL here starts from: ``signer``'s name and key identifier, the update times and the number."""
    ski = signer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateRevocationListBuilder()
        .issuer_name(signer.subject)
        .last_update(now)
        .next_update(now + valid_for)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
    )


def build_crl(
    issuer: Issuer, revoked: list[RevokedEntry], *, number: int, now: datetime, valid_for: timedelta
) -> x509.CertificateRevocationList:
    builder = crl_builder(issuer.certificate, number=number, now=now, valid_for=valid_for)
    for entry in revoked:
        item = x509.RevokedCertificateBuilder().serial_number(entry.serial_number).revocation_date(entry.revoked_at)
        flag = REASONS.get(entry.reason)
        if flag is not None:
            item = item.add_extension(x509.CRLReason(flag), critical=False)
        builder = builder.add_revoked_certificate(item.build())
    return builder.sign(issuer.key, hash_for(issuer.key))
