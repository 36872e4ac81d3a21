"""Device-side check of a feature licence, with nothing but the root the device already trusts.

It imports nothing of the server (a device or line PC runs it). A licence is accepted only when: its
signer certificate is issued directly by the trusted root, is valid now, is not a CA, may make digital
signatures and carries the licence-signing key purpose; its signature over the canonical JSON of the
licence verifies with the signer's key; it names this device's certificate (SHA-256 and serial); and it
has not expired. Any other answer is :class:`LicenceInvalid` with a reason code.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from fabguard_station.errors import FixtureError

# Must equal fabguard.pki.licence.LICENCE_SIGNING_EKU (a test checks it); kept here so the SDK needs no server.
LICENCE_SIGNING_EKU = x509.ObjectIdentifier("2.25.48984731746818741119917491641965278828")


class LicenceInvalid(FixtureError):
    """The licence does not hold for this device; ``code`` says why."""

    code = "licence_invalid"


@dataclass(frozen=True)
class VerifiedLicence:
    licence_id: str
    product_id: str
    serial: str
    features: tuple[str, ...]
    not_after: datetime | None


def verify_licence(
    document: bytes | str | dict[str, Any],
    *,
    device_certificate: x509.Certificate,
    root: x509.Certificate,
    now: datetime | None = None,
    crl: x509.CertificateRevocationList | None = None,
) -> VerifiedLicence:
    """Check ``document`` for the device holding ``device_certificate``, trusting ``root`` only. With the
    root's ``crl`` (``/crl/root.crl``), a licence whose signer was revoked is refused (``licence_signer_revoked``):
    a device that can fetch it now and then learns of a compromised signer."""
    at = (now or datetime.now(UTC)).astimezone(UTC)
    doc = _parsed(document)
    try:
        body, signature_b64, chain = doc["licence"], doc["signature"], doc["chain"]
        signer = x509.load_pem_x509_certificate(str(chain[0]).encode())
        signature = base64.b64decode(signature_b64, validate=True)
        device = body["device"]
        features = tuple(str(f) for f in body["features"])
        not_after = _time(body["not_after"]) if body.get("not_after") else None
        licence_id, product_id, serial = str(body["id"]), str(body["product_id"]), str(device["serial"])
        if not isinstance(device, dict):
            raise TypeError("the licence's device is not an object")
        message = _canonical(body)  # NaN or Infinity (which json.loads accepts) has no canonical form
    except (KeyError, IndexError, TypeError, ValueError, binascii.Error) as exc:
        raise LicenceInvalid(f"not a FabGuard licence: {exc}", code="licence_malformed") from None
    _check_signer(signer, root, at)
    if crl is not None:
        _check_not_revoked(signer, root, crl)
    # Each product has its own licence signer: one product's key must not license another's devices.
    names = signer.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names or names[0].value != f"{product_id} licences":
        raise LicenceInvalid(f"the licence is not signed by product {product_id}'s signer", code="licence_untrusted")
    _check_signature(signer, signature, message)
    der = device_certificate.public_bytes(serialization.Encoding.DER)
    if device.get("certificate_sha256") != hashlib.sha256(der).hexdigest() or device.get(
        "certificate_serial"
    ) != format(device_certificate.serial_number, "x"):
        raise LicenceInvalid("the licence is bound to another device certificate", code="licence_wrong_device")
    if not_after is not None and at >= not_after:
        raise LicenceInvalid(f"the licence expired at {body['not_after']}", code="licence_expired")
    return VerifiedLicence(licence_id, product_id, serial, features, not_after)


def _parsed(document: bytes | str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(document, dict):
        return document
    try:
        value = json.loads(document)
    except (ValueError, UnicodeDecodeError) as exc:
        raise LicenceInvalid(f"the licence is not JSON: {exc}", code="licence_malformed") from None
    if not isinstance(value, dict):
        raise LicenceInvalid("the licence is not a JSON object", code="licence_malformed")
    return value


def _check_signer(signer: x509.Certificate, root: x509.Certificate, at: datetime) -> None:
    try:
        signer.verify_directly_issued_by(root)
    except (ValueError, TypeError, InvalidSignature):
        raise LicenceInvalid(
            "the licence's signer is not certified by the trusted root", code="licence_untrusted"
        ) from None
    if not signer.not_valid_before_utc <= at <= signer.not_valid_after_utc:
        raise LicenceInvalid("the licence's signer certificate is not valid now", code="licence_untrusted")
    ext = signer.extensions
    try:
        basic = ext.get_extension_for_class(x509.BasicConstraints).value
        usage = ext.get_extension_for_class(x509.KeyUsage).value
        purposes = ext.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        raise LicenceInvalid("the signer certificate is not a licence signer's", code="licence_untrusted") from None
    if basic.ca or not usage.digital_signature or LICENCE_SIGNING_EKU not in purposes:
        raise LicenceInvalid("the signer certificate may not sign licences", code="licence_untrusted")


def _check_not_revoked(signer: x509.Certificate, root: x509.Certificate, crl: x509.CertificateRevocationList) -> None:
    if crl.issuer != root.subject or not crl.is_signature_valid(root.public_key()):  # type: ignore[arg-type]
        raise LicenceInvalid("the CRL given is not the trusted root's", code="licence_crl_invalid")
    if crl.get_revoked_certificate_by_serial_number(signer.serial_number) is not None:
        raise LicenceInvalid(
            "the licence's signer was revoked (it is on the root's CRL)", code="licence_signer_revoked"
        )


def _check_signature(signer: x509.Certificate, signature: bytes, message: bytes) -> None:
    key = signer.public_key()
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, message)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        else:
            raise LicenceInvalid("the signer's key type is not one licences use", code="licence_untrusted")
    except InvalidSignature:
        raise LicenceInvalid(
            "the licence's signature does not verify: it was altered", code="licence_tampered"
        ) from None


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def _time(text: str) -> datetime:
    t = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    if t.tzinfo is None:
        raise ValueError(f"time {text!r} has no zone")
    return t.astimezone(UTC)


__all__ = ["LICENCE_SIGNING_EKU", "LicenceInvalid", "VerifiedLicence", "verify_licence"]
