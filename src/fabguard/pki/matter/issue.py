"""Issuing Matter attestation certificates: a PAA, the PAIs it signs, the DACs a PAI signs (6.2.2)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from fabguard.pki.builder import Template, authority_key_id, certificate_builder
from fabguard.pki.keys import SigningKey
from fabguard.pki.matter.identity import (
    AttestationProfileError,
    AttestationRole,
    ProductId,
    VendorId,
    attestation_subject,
    subject_ids,
    utc,
)
from fabguard.pki.profiles import BACKDATE, NO_WELL_DEFINED_EXPIRY, Issuer, ca_key_usage, signature_key_usage


def _p256_private(key: SigningKey, whose: str) -> ec.EllipticCurvePrivateKey:
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise AttestationProfileError("public-key", f"the {whose} key must be ECDSA on P-256 (6.1)")
    return key


def _p256_public(public_key: CertificatePublicKeyTypes, whose: str) -> ec.EllipticCurvePublicKey:
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(public_key.curve, ec.SECP256R1):
        raise AttestationProfileError("public-key", f"the {whose} public key must be ECDSA on P-256 (6.1)")
    return public_key


def _issued_within(issuer: x509.Certificate, start: datetime, role: AttestationRole) -> None:
    """Verifiers check the chain at the DAC's notBefore (6.2.3.1), so each issuer must be valid when it issues."""
    if not issuer.not_valid_before_utc <= start <= issuer.not_valid_after_utc:
        raise AttestationProfileError(
            "issued-within-issuer-validity",
            f"a {role} issued at {start:%Y-%m-%dT%H:%M:%SZ} falls outside its issuer's validity "
            f"{issuer.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ} to {issuer.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}",
        )


def paa_certificate(
    key: SigningKey, common_name: str, now: datetime, vid: VendorId | None = None, years: int = 25
) -> Issuer:
    """A self-signed Product Attestation Authority; ``vid`` None makes a non-VID-scoped PAA (6.2.2.5)."""
    signer = _p256_private(key, "PAA")
    public = signer.public_key()
    start = utc(now) - BACKDATE
    name = attestation_subject(common_name, vid, None)
    ski = x509.SubjectKeyIdentifier.from_public_key(public)
    cert = certificate_builder(
        name,
        name,
        public,
        start,
        start + timedelta(days=365 * years),
        # pathLen 1: a PAA signs PAIs, and a PAI signs DACs only; the 3-certificate chain is the whole point.
        constraints=x509.BasicConstraints(ca=True, path_length=1),
        key_usage=ca_key_usage(),
        authority_key=x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
    ).sign(signer, hashes.SHA256())
    return Issuer(cert, signer)


def pai_certificate(
    paa: Issuer,
    public_key: CertificatePublicKeyTypes,
    common_name: str,
    vid: VendorId,
    pid: ProductId | None,
    now: datetime,
    years: int = 15,
) -> x509.Certificate:
    """A Product Attestation Intermediate for one vendor, optionally one product; never outlives its PAA."""
    signer = _p256_private(paa.key, "PAA")
    subject_key = _p256_public(public_key, "PAI")
    paa_vid, paa_pid = subject_ids(paa.certificate.subject)
    if paa_pid is not None:
        raise AttestationProfileError("paa-without-pid", f"the PAA carries product ID {paa_pid}; a PAA never does")
    if paa_vid is not None and paa_vid != vid:
        raise AttestationProfileError(
            "pai-vid-matches-paa", f"the PAA is scoped to vendor {paa_vid}; it cannot issue a PAI for vendor {vid}"
        )
    start = utc(now) - BACKDATE
    _issued_within(paa.certificate, start, AttestationRole.PAI)
    end = min(start + timedelta(days=365 * years), paa.certificate.not_valid_after_utc)
    return certificate_builder(
        attestation_subject(common_name, vid, pid),
        paa.certificate.subject,
        subject_key,
        start,
        end,
        constraints=x509.BasicConstraints(ca=True, path_length=0),
        key_usage=ca_key_usage(),
        authority_key=authority_key_id(paa.certificate),
    ).sign(signer, hashes.SHA256())


@dataclass(frozen=True, slots=True)
class DacProfile:
    """The DACs one PAI signs: what does not vary from device to device (the PAI's name, vendor and product,
    the extensions but the subject key identifier) read and built once, for a writer signing many."""

    pai: Issuer
    signer: ec.EllipticCurvePrivateKey
    pai_vid: VendorId | None
    pai_pid: ProductId | None
    template: Template

    @classmethod
    def of(cls, pai: Issuer) -> DacProfile:
        signer = _p256_private(pai.key, "PAI")
        pai_vid, pai_pid = subject_ids(pai.certificate.subject)
        template = Template.of(
            pai.certificate.subject,
            constraints=x509.BasicConstraints(ca=False, path_length=None),
            key_usage=signature_key_usage(),
            authority_key=authority_key_id(pai.certificate),
        )
        return cls(pai, signer, pai_vid, pai_pid, template)

    def certificate(
        self,
        public_key: CertificatePublicKeyTypes,
        common_name: str,
        vid: VendorId,
        pid: ProductId,
        now: datetime,
        not_after: datetime | None = None,
        key_id: bytes | None = None,
    ) -> x509.Certificate:
        """A Device Attestation Certificate; without ``not_after`` it has no well-defined expiry (99991231235959Z).
        ``key_id``: the key's subject key identifier, if the caller has it (``csr.CheckedCsr.key_id``)."""
        subject_key = _p256_public(public_key, "DAC")
        if self.pai_vid != vid:
            raise AttestationProfileError(
                "dac-vid-matches-pai", f"the PAI is for vendor {self.pai_vid}; it cannot issue a DAC for vendor {vid}"
            )
        if self.pai_pid is not None and self.pai_pid != pid:
            raise AttestationProfileError(
                "dac-pid-matches-pai",
                f"the PAI is for product {self.pai_pid}; it cannot issue a DAC for product {pid}",
            )
        start = utc(now) - BACKDATE
        _issued_within(self.pai.certificate, start, AttestationRole.DAC)
        end = NO_WELL_DEFINED_EXPIRY if not_after is None else utc(not_after)
        if end <= start:
            raise AttestationProfileError("validity-period", f"the DAC would expire ({end}) before it starts ({start})")
        subject = attestation_subject(common_name, vid, pid)
        return self.template.builder(subject, subject_key, start, end, key_id).sign(self.signer, hashes.SHA256())


def dac_certificate(
    pai: Issuer,
    public_key: CertificatePublicKeyTypes,
    common_name: str,
    vid: VendorId,
    pid: ProductId,
    now: datetime,
    not_after: datetime | None = None,
) -> x509.Certificate:
    """A Device Attestation Certificate; without ``not_after`` it has no well-defined expiry (99991231235959Z)
    (one certificate of :class:`DacProfile`)."""
    return DacProfile.of(pai).certificate(public_key, common_name, vid, pid, now, not_after)
