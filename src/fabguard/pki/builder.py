"""The part every certificate profile shares: names, a random serial, validity, the public key, and the
extensions each one carries, always in the same order.

The profiles (``pki.profiles``, ``pki.matter.issue``, ``pki.licence``, ``pki.handoff``) add what is theirs
and sign; none assembles the common part by hand.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtensionOID


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


def _extension(value: x509.ExtensionType, critical: bool) -> x509.Extension[x509.ExtensionType]:
    """The extension with its value encoded now: the certificate encoder copies an unrecognized extension's
    bytes, where it would encode a known one's anew for each certificate (half the cost of building one)."""
    return x509.Extension(value.oid, critical, x509.UnrecognizedExtension(value.oid, value.public_bytes()))


def _key_identifier(key_id: bytes) -> x509.Extension[x509.ExtensionType]:
    """The subject key identifier extension, its value (an OCTET STRING of the identifier) encoded here."""
    assert len(key_id) < 0x80, "a key identifier of a short-form length"
    value = x509.UnrecognizedExtension(ExtensionOID.SUBJECT_KEY_IDENTIFIER, bytes((0x04, len(key_id))) + key_id)
    return x509.Extension(ExtensionOID.SUBJECT_KEY_IDENTIFIER, False, value)


def _naive_utc(t: datetime) -> datetime:
    """What ``CertificateBuilder.not_valid_before``/``after`` store: naive UTC (a naive time is UTC already)."""
    return t if t.tzinfo is None else t.astimezone(UTC).replace(tzinfo=None)


@dataclass(frozen=True, slots=True)
class Template:
    """What :func:`certificate_builder` makes of an issuer's name and the extensions that do not vary from one
    certificate to the next, built once, for profiles that sign many certificates (a device per unit): the
    certificates it builds are those ``certificate_builder`` would build, extension for extension
    (``tests/pki/test_certificate_templates.py`` compares them byte for byte)."""

    issuer: x509.Name
    head: tuple[x509.Extension[x509.ExtensionType], ...]  # basicConstraints, keyUsage, then ``extensions``
    tail: tuple[x509.Extension[x509.ExtensionType], ...]  # after the subject key identifier

    @classmethod
    def of(
        cls,
        issuer: x509.Name,
        *,
        constraints: x509.BasicConstraints,
        key_usage: x509.KeyUsage,
        extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
        authority_key: x509.AuthorityKeyIdentifier | None = None,
        after: Sequence[tuple[x509.ExtensionType, bool]] = (),
    ) -> Template:
        """``certificate_builder``'s arguments but the certificate's own; ``after``: what the profile adds
        after them (its ``add_extension`` calls on the builder, in order)."""
        head = (_extension(constraints, True), _extension(key_usage, True), *(_extension(*e) for e in extensions))
        tail = (
            *(() if authority_key is None else (_extension(authority_key, False),)),
            *(_extension(*e) for e in after),
        )
        return cls(issuer, head, tail)

    def builder(
        self,
        subject: x509.Name,
        public_key: CertificatePublicKeyTypes,
        not_before: datetime,
        not_after: datetime,
        key_id: bytes | None = None,
    ) -> x509.CertificateBuilder:
        """A builder of this certificate, with a random serial number, ready to sign. ``key_id``: the subject key
        identifier of ``public_key`` when the caller has it (``keys.key_identifiers``), else it is computed."""
        start, end = _naive_utc(not_before), _naive_utc(not_after)
        if end < start:
            raise ValueError("The not valid after date must be after the not valid before date.")
        if key_id is None:
            key_id = x509.SubjectKeyIdentifier.from_public_key(public_key).digest
        ski = _key_identifier(key_id)
        return x509.CertificateBuilder(
            issuer_name=self.issuer,
            subject_name=subject,
            public_key=public_key,
            serial_number=x509.random_serial_number(),
            not_valid_before=start,
            not_valid_after=end,
            extensions=[*self.head, ski, *self.tail],
        )


def certificate_pem(der: bytes) -> str:
    """The PEM of a DER certificate, as ``Certificate.public_bytes(Encoding.PEM)`` writes it (64-character
    lines), for a caller that needs both and should not encode the certificate twice."""
    b64 = base64.b64encode(der).decode("ascii")
    lines = "".join(b64[at : at + 64] + "\n" for at in range(0, len(b64), 64))
    return f"-----BEGIN CERTIFICATE-----\n{lines}-----END CERTIFICATE-----\n"


__all__ = ["Template", "authority_key_id", "certificate_builder", "certificate_pem"]
