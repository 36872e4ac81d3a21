"""Secure-element key attestation: the device certificate its SE vendor provisioned (a Microchip
TrustFLEX manifest's device certificate, say), with the vendor's signer chain.

Checked here: the device certificate holds exactly the CSR's public key. Whether the chain ends at one of
the product's trusted SE vendor roots is checked by ``chain.trusted_root`` (the caller runs both).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fabguard.domain.errors import Refusal


@dataclass(frozen=True, slots=True)
class SeEvidence:
    """What the device presented, parsed: ``se-chain``."""

    chain: tuple[x509.Certificate, ...]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(b"".join(c.public_bytes(serialization.Encoding.DER) for c in self.chain)).hexdigest()


def _spki(key: object) -> bytes:
    public_bytes = getattr(key, "public_bytes", None)
    if public_bytes is None:
        return b""
    der: bytes = public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return der


def verify_device_key(evidence: SeEvidence, csr_key: object) -> None:
    """The SE's device certificate attests the very key the CSR carries."""
    if _spki(evidence.chain[0].public_key()) != _spki(csr_key):
        raise Refusal("attestation_invalid", "the CSR's key is not the key the secure element's certificate attests")
