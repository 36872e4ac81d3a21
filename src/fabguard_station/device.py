"""A simulated device: its key is made "on the device" and never leaves it; only a CSR does."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# What a device signs to answer a field challenge: this context, then the 32 nonce bytes. The server's
# copy is fabguard.domain.field.CHALLENGE_CONTEXT (the SDK imports nothing of the server; a test holds
# the two equal). No other protocol signs these bytes, so an answer cannot be replayed from elsewhere.
FIELD_CHALLENGE_CONTEXT = b"FabGuard field genuineness challenge v1\x00"


def field_challenge_message(nonce_hex: str) -> bytes:
    """The exact bytes to sign for the challenge nonce ``nonce_hex`` (64 hex digits)."""
    nonce = bytes.fromhex(nonce_hex)
    if len(nonce) != 32:
        raise ValueError("a field challenge nonce is 32 bytes (64 hex digits)")
    return FIELD_CHALLENGE_CONTEXT + nonce


@dataclass
class SimulatedDevice:
    serial: str
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    certificate_pem: str | None = None

    def csr_pem(self) -> str:
        """A PKCS#10 request whose subject carries only the serial, as the secure element would make it."""
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, self.serial)]))
            .sign(self.key, hashes.SHA256())
        )
        return csr.public_bytes(serialization.Encoding.PEM).decode()

    def answer_challenge(self, nonce_hex: str) -> str:
        """Sign a field challenge as the secure element would: base64 of the ECDSA (DER) signature,
        SHA-256 for P-256 and SHA-384 for P-384, over the challenge message."""
        digest = hashes.SHA384() if self.key.curve.key_size > 256 else hashes.SHA256()
        signature = self.key.sign(field_challenge_message(nonce_hex), ec.ECDSA(digest))
        return base64.b64encode(signature).decode()

    def field_answer(self, nonce_hex: str, *, source: str | None = None) -> dict[str, str]:
        """The body of ``POST /api/v1/field/verify`` for this device (it must hold its certificate)."""
        if self.certificate_pem is None:
            raise ValueError(f"device {self.serial} has no certificate yet")
        body = {"nonce": nonce_hex, "signature": self.answer_challenge(nonce_hex), "chain": self.certificate_pem}
        if source is not None:
            body["source"] = source
        return body

    def clone_as(self, serial: str) -> SimulatedDevice:
        """A counterfeit: another serial with this device's extracted key."""
        return SimulatedDevice(serial=serial, key=self.key)
