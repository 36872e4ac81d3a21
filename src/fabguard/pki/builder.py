"""The part every certificate profile shares: names, a random serial, validity, the public key, and the
extensions each one carries, always in the same order.

The profiles (``pki.profiles``, ``pki.matter.issue``, ``pki.licence``, ``pki.handoff``) add what is theirs
and sign; none assembles the common part by hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes


def authority_key_id(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """The authority key identifier naming ``issuer``'s own subject key identifier (RFC 5280 4.2.1.1)."""
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def certificate_builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: CertificatePublicKeyTypes,
    not_before: datetime,
    not_after: datetime,
    *,
    constraints: x509.BasicConstraints,
    key_usage: x509.KeyUsage,
    extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
    authority_key: x509.AuthorityKeyIdentifier | None = None,
) -> x509.CertificateBuilder:
    """A builder holding the common part of a certificate, ready for what comes after it and a signature.

    The serial number is random, so unique under its issuer and not guessable. The extensions come in this
    order: basicConstraints and keyUsage (both critical), ``extensions`` (each with its criticality), the
    subject key identifier of ``public_key``, then ``authority_key`` when given (a root names none).
    """
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(constraints, critical=True)
        .add_extension(key_usage, critical=True)
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    if authority_key is not None:
        builder = builder.add_extension(authority_key, critical=False)
    return builder


__all__ = ["authority_key_id", "certificate_builder"]
