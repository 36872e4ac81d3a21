"""Checking a device's certificate signing request before anything is signed for it."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes
from cryptography.x509.oid import AttributeOID, NameOID

from fabguard.domain.errors import Refusal
from fabguard.domain.issuance import CsrFacts
from fabguard.domain.values import KeyType
from fabguard.pki.keys import key_identifiers

_ALLOWED_ATTRIBUTES = {AttributeOID.CHALLENGE_PASSWORD}
# PKCS#9 extensionRequest: allowed only when it requests nothing (checked through csr.extensions).
_EXTENSION_REQUEST = x509.ObjectIdentifier("1.2.840.113549.1.9.14")


@dataclass(frozen=True, slots=True)
class CheckedCsr:
    facts: CsrFacts
    public_key: CertificateIssuerPublicKeyTypes
    csr: x509.CertificateSigningRequest  # for key attestation, which binds to the CSR's bytes
    key_id: bytes | None = None  # the subject key identifier of ``public_key``, made with its fingerprint


def load_csr(data: bytes, max_bytes: int) -> x509.CertificateSigningRequest:
    """Read a CSR given as PEM, DER, or base64 DER (the EST wire form)."""
    if not data:
        raise Refusal("csr_invalid", "the CSR is empty")
    if len(data) > max_bytes:
        raise Refusal("csr_invalid", f"the CSR is {len(data)} bytes; at most {max_bytes} are accepted")
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_csr(data.strip())
        if data[:1] == b"\x30":
            return x509.load_der_x509_csr(data)
        return x509.load_der_x509_csr(base64.b64decode(b"".join(data.split()), validate=True))
    except (ValueError, binascii.Error, TypeError, x509.InvalidVersion):
        raise Refusal("csr_invalid", "the CSR could not be parsed as PEM, DER or base64 DER PKCS#10") from None


def key_type_of(public_key: object) -> KeyType:
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if isinstance(public_key.curve, ec.SECP256R1):
            return KeyType.EC_P256
        if isinstance(public_key.curve, ec.SECP384R1):
            return KeyType.EC_P384
        raise Refusal("key_type_not_allowed", f"elliptic curve {public_key.curve.name} is not supported")
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return KeyType.ED25519
    if isinstance(public_key, rsa.RSAPublicKey):
        raise Refusal("key_type_not_allowed", f"RSA-{public_key.key_size} device keys are not supported")
    raise Refusal("key_type_not_allowed", f"{type(public_key).__name__} device keys are not supported")


def proven_public_key(csr: x509.CertificateSigningRequest) -> tuple[CertificateIssuerPublicKeyTypes, KeyType]:
    """The CSR's key, if it is of a supported type and the CSR is signed by it (proof of possession)."""
    try:
        public_key = csr.public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise Refusal("key_type_not_allowed", "the CSR's public key is of an unsupported type") from None
    key_type = key_type_of(public_key)
    try:
        valid = csr.is_signature_valid
    except Exception:  # an unsupported signature algorithm surfaces here as various errors
        valid = False
    if not valid:
        raise Refusal("csr_invalid", "the CSR's signature does not verify (no proof of possession)")
    if not isinstance(public_key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        raise Refusal("key_type_not_allowed", "unsupported key")
    return public_key, key_type


def check_device_csr(csr: x509.CertificateSigningRequest) -> CheckedCsr:
    """Proof of possession, a known key type, a subject of only the serial, nothing else asked for."""
    public_key, key_type = proven_public_key(csr)
    try:
        extensions = csr.extensions
        attributes = list(csr.attributes)
        subject = csr.subject
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType):
        raise Refusal("csr_invalid", "the CSR's attributes cannot be parsed") from None
    if len(extensions) > 0:
        names = ", ".join(e.oid._name for e in extensions)
        raise Refusal("csr_invalid", f"the CSR asks for extensions ({names}); the profile decides them")
    for attribute in attributes:
        if attribute.oid not in _ALLOWED_ATTRIBUTES and attribute.oid != _EXTENSION_REQUEST:
            raise Refusal("csr_invalid", f"the CSR carries an unexpected attribute {attribute.oid.dotted_string}")
    serials = subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    if len(serials) != 1:
        raise Refusal("serial_mismatch", "the CSR subject must carry exactly one serialNumber attribute")
    serial = serials[0].value
    if not isinstance(serial, str):
        raise Refusal("csr_invalid", "the CSR subject serialNumber is not a string")
    for rdn in subject.rdns:
        for attr in rdn:
            if attr.oid == NameOID.SERIAL_NUMBER:
                continue
            if attr.oid == NameOID.COMMON_NAME and attr.value == serial:
                continue
            raise Refusal(
                "csr_invalid",
                f"the CSR subject carries an unexpected attribute {attr.oid._name}; "
                "only serialNumber (and a commonName equal to it) is accepted",
            )
    fingerprint, key_id = key_identifiers(public_key)
    return CheckedCsr(CsrFacts(serial, key_type, fingerprint), public_key, csr, key_id)
