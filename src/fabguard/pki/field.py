"""The cryptography of a field check: the presented chain, our issuing CAs, the device's signature.

Pure (values in, facts out): ``service.field`` calls it with the CA registry's certificates and the
unit rows, ``pki.field_offline`` with an export's. Trust comes only from the CA certificates the
caller passes: the intermediates the device sends are read to find its leaf, never trusted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from fabguard.domain.errors import InvalidRequest
from fabguard.domain.field import MAX_CHAIN_BYTES, MAX_SIGNATURE_BYTES, CheckFacts, UnitRecord, challenge_message
from fabguard.pki.keys import spki_fingerprint


@dataclass(frozen=True, slots=True)
class TrustedCa:
    """One of our issuing CAs: its certificate and whether it is revoked."""

    name: str
    certificate: x509.Certificate
    revoked: bool


def parse_chain(pem: str) -> x509.Certificate:
    """The leaf (first certificate) of a PEM chain; the rest is ignored (trust is ours, not the caller's)."""
    data = pem.encode("utf-8", "replace") if isinstance(pem, str) else b""
    if not data.strip() or len(data) > MAX_CHAIN_BYTES:
        raise InvalidRequest(
            f"the certificate chain is PEM, the device certificate first, at most {MAX_CHAIN_BYTES} bytes",
            code="field_chain_invalid",
        )
    try:
        leaf = x509.load_pem_x509_certificates(data)[0]
        # cryptography parses lazily: read now what the check reads later, so a certificate with an
        # unknown key algorithm or a badly encoded name is refused here, not a server error there.
        leaf.public_key()
        subject_serial(leaf)
        _ = (leaf.issuer.rfc4514_string(), leaf.serial_number, leaf.not_valid_before_utc, leaf.not_valid_after_utc)
    except (ValueError, UnsupportedAlgorithm):
        raise InvalidRequest("the certificate chain is not PEM certificates", code="field_chain_invalid") from None
    return leaf


def parse_signature(text: str) -> bytes:
    """The device's signature as the API carries it: base64 (standard alphabet, padded)."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True) if isinstance(text, str) else b""
    except (binascii.Error, UnicodeEncodeError):
        raw = b""
    if not raw or len(raw) > MAX_SIGNATURE_BYTES:
        raise InvalidRequest(
            f"the signature is base64 of at most {MAX_SIGNATURE_BYTES} bytes", code="field_signature_malformed"
        )
    return raw


def subject_serial(cert: x509.Certificate) -> str | None:
    values = cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    return str(values[0].value) if values else None


def cert_sha256(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def issuing_ca(cert: x509.Certificate, cas: Sequence[TrustedCa]) -> TrustedCa | None:
    """The CA of ``cas`` that signed ``cert``, if any."""
    return next((ca for ca in cas if ca.certificate.subject == cert.issuer and signed_by(cert, ca.certificate)), None)


def signature_valid(cert: x509.Certificate, nonce: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is the certificate key's over the challenge message of ``nonce``."""
    message = challenge_message(nonce)
    key = cert.public_key()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            digest = hashes.SHA384() if key.curve.key_size > 256 else hashes.SHA256()
            key.verify(signature, message, ec.ECDSA(digest))
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, message)
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True


def within_validity(cert: x509.Certificate, now: datetime) -> bool:
    return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


def pick_unit(candidates: Sequence[UnitRecord], key_fp: str, sha: str) -> UnitRecord | None:
    """The unit a certificate names among those of its serial: the exact certificate, else the same key,
    else any (one serial may exist in several products)."""
    for match in (lambda u: u.cert_sha256 == sha, lambda u: u.key_fingerprint == key_fp, lambda u: True):
        found = next((u for u in candidates if match(u)), None)
        if found is not None:
            return found
    return None


@dataclass(frozen=True, slots=True)
class LeafFacts:
    """What a check learns from the answer and our CAs' certificates alone, before any record is read:
    the CA that signed the leaf (by name), its validity, names and the device's signature."""

    ca: str | None
    within_validity: bool
    subject_serial: str | None
    key_fingerprint: str
    cert_sha256: str
    signature_valid: bool

    def facts(self, ca_revoked: bool, units: Sequence[UnitRecord]) -> CheckFacts:
        """The facts ``domain.field.decide`` judges, once the CA's state and the units are read."""
        return CheckFacts(
            chained=self.ca is not None,
            ca_revoked=self.ca is not None and ca_revoked,
            within_validity=self.within_validity,
            subject_serial=self.subject_serial,
            key_fingerprint=self.key_fingerprint,
            cert_sha256=self.cert_sha256,
            unit=pick_unit(units, self.key_fingerprint, self.cert_sha256),
            signature_valid=self.signature_valid,
        )


def leaf_facts(
    leaf: x509.Certificate, cas: Sequence[TrustedCa], nonce: bytes, signature: bytes, now: datetime
) -> LeafFacts:
    """The leaf's facts: which of ``cas`` signed it, its validity at ``now``, its names, the signature."""
    ca = issuing_ca(leaf, cas)
    return LeafFacts(
        ca=ca.name if ca is not None else None,
        within_validity=within_validity(leaf, now),
        subject_serial=subject_serial(leaf),
        key_fingerprint=spki_fingerprint(leaf.public_key()),
        cert_sha256=cert_sha256(leaf),
        signature_valid=signature_valid(leaf, nonce, signature),
    )


def check_facts(
    leaf: x509.Certificate,
    cas: Sequence[TrustedCa],
    units: Sequence[UnitRecord],
    nonce: bytes,
    signature: bytes,
    now: datetime,
) -> CheckFacts:
    """The facts ``domain.field.decide`` judges, from the leaf, our CAs and the units of its serial."""
    found = leaf_facts(leaf, cas, nonce, signature, now)
    revoked = any(ca.revoked for ca in cas if ca.name == found.ca)
    return found.facts(revoked, units)
