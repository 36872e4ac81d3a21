"""Feature licences: the licence-signing certificate profile and the signed licence document.

A licence says which features one device may use, until when, bound to that device's certificate by its
SHA-256 and serial. It is signed by a key of its own, never the device-issuing CA key, whose certificate
is issued under the root the device already trusts, is not a CA, and carries a key purpose of its own
(``LICENCE_SIGNING_EKU``, marked critical so no other use accepts it). The document carries its signer's
certificate chain, so the device verifies it with the root alone (``fabguard.fixture.licence``).

Format (``docs`` in the README): ``{"licence": {...}, "signature": base64, "chain": [PEM, ...]}``, where
the signature is over the canonical JSON of ``licence`` (keys sorted, no white space, ASCII), ECDSA P-256
with SHA-256 (DER) or Ed25519, by the first certificate of ``chain``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes
from cryptography.x509.oid import NameOID

from fabguard.pki.builder import authority_key_id, certificate_builder
from fabguard.pki.keys import SigningKey
from fabguard.pki.profiles import BACKDATE, Issuer, hash_for, signature_key_usage

# id-kp for FabGuard licence signing: a UUID-derived OID (ITU-T X.667, arc 2.25), needing no registry.
LICENCE_SIGNING_EKU = x509.ObjectIdentifier("2.25.48984731746818741119917491641965278828")
LICENCE_VERSION = 1


def canonical(value: Any) -> bytes:
    """The bytes a licence signature covers (the same rule as ledger entries)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def licence_signer_subject(organization: str, product_id: str) -> x509.Name:
    """The subject of a product's licence signer (devices check its CN names the licence's product)."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "licence signing"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{product_id} licences"),
        ]
    )


def licence_signer_certificate(
    root: Issuer,
    public_key: CertificateIssuerPublicKeyTypes,
    organization: str,
    product_id: str,
    now: datetime,
    years: int = 10,
) -> x509.Certificate:
    """The certificate of a product's licence-signing key: an end entity under ``root``, for licences only."""
    start = now.astimezone(UTC) - BACKDATE
    end = min(start + timedelta(days=365 * years), root.certificate.not_valid_after_utc)
    return certificate_builder(
        licence_signer_subject(organization, product_id),
        root.certificate.subject,
        public_key,
        start,
        end,
        constraints=x509.BasicConstraints(ca=False, path_length=None),
        key_usage=signature_key_usage(),
        extensions=[(x509.ExtendedKeyUsage([LICENCE_SIGNING_EKU]), True)],
        authority_key=authority_key_id(root.certificate),
    ).sign(root.key, hash_for(root.key))


def licence_body(
    *,
    licence_id: str,
    organization: str,
    product_id: str,
    serial: str,
    device_certificate: x509.Certificate,
    features: Sequence[str],
    issued_at: datetime,
    not_after: datetime | None,
) -> dict[str, Any]:
    der = device_certificate.public_bytes(serialization.Encoding.DER)
    return {
        "v": LICENCE_VERSION,
        "id": licence_id,
        "issuer": organization,
        "product_id": product_id,
        "device": {
            "serial": serial,
            "certificate_sha256": hashlib.sha256(der).hexdigest(),
            "certificate_serial": format(device_certificate.serial_number, "x"),
        },
        "features": sorted(set(features)),
        "issued_at": _time(issued_at),
        "not_after": _time(not_after) if not_after else None,
    }


def sign_licence(body: dict[str, Any], signer: Issuer) -> dict[str, Any]:
    """The signed document: the body, its signature by ``signer`` and the signer's chain (below the root)."""
    key: SigningKey = signer.key
    message = canonical(body)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        signature = key.sign(message)
    else:
        signature = key.sign(message, ec.ECDSA(hashes.SHA256()))
    return {
        "licence": body,
        "signature": base64.b64encode(signature).decode(),
        "chain": [signer.certificate.public_bytes(serialization.Encoding.PEM).decode()],
    }


def _time(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
