"""The SPAKE2+ verifier a Matter device keeps instead of its setup passcode (Core Specification 3.10).

``w0s || w1s = PBKDF2-HMAC-SHA256(passcode as 4 bytes little-endian, salt, iterations, 80 bytes)``;
``w0 = w0s mod n``, ``w1 = w1s mod n`` (n the order of P-256); ``L = w1 * G``. The verifier is
``w0`` (32 bytes, big-endian) followed by ``L`` as an uncompressed point (65 bytes): 97 bytes, the
form connectedhomeip's ``spake2p`` tool and esp-matter-mfg-tool write. The KDF and the point
multiplication are ``cryptography``'s; only the reduction mod n is done here.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Self

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from fabguard.domain.errors import InvalidRequest
from fabguard.domain.values import describe_value
from fabguard.pki.matter.onboarding import SetupPasscode

# The order n of the P-256 base point (SEC 2, secp256r1): cryptography does not expose it.
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_W_LENGTH = 32 + 8  # each of w0s and w1s: the field size plus 64 bits, so the reduction mod n is unbiased
SALT_MIN, SALT_MAX = 16, 32  # bytes (5.1.1.7 / the PBKDF parameter set)
ITERATIONS_MIN, ITERATIONS_MAX = 1000, 100000
DEFAULT_ITERATIONS = 10000
VERIFIER_LENGTH = 32 + 65


@dataclass(frozen=True, slots=True)
class Spake2pParameters:
    """The PBKDF parameters a unit's verifier is made with: a 16-32 byte salt and 1000-100000 iterations."""

    salt: bytes
    iterations: int = DEFAULT_ITERATIONS

    def __post_init__(self) -> None:
        if not isinstance(self.salt, bytes) or not SALT_MIN <= len(self.salt) <= SALT_MAX:
            shown = f"{len(self.salt)} bytes" if isinstance(self.salt, bytes) else describe_value(self.salt)
            raise InvalidRequest(
                f"SPAKE2+ salt of {shown} is not {SALT_MIN}-{SALT_MAX} bytes", code="invalid_matter_onboarding"
            )
        if (
            isinstance(self.iterations, bool)
            or not isinstance(self.iterations, int)
            or not ITERATIONS_MIN <= self.iterations <= ITERATIONS_MAX
        ):
            raise InvalidRequest(
                f"SPAKE2+ iteration count {describe_value(self.iterations)} is not {ITERATIONS_MIN}-{ITERATIONS_MAX}",
                code="invalid_matter_onboarding",
            )

    @classmethod
    def random(cls, iterations: int = DEFAULT_ITERATIONS) -> Self:
        """A fresh 32-byte salt from the operating system's CSPRNG."""
        return cls(secrets.token_bytes(SALT_MAX), iterations)


def spake2p_verifier(passcode: SetupPasscode, parameters: Spake2pParameters) -> bytes:
    """The 97-byte verifier ``w0 || L`` for a passcode under these parameters."""
    kdf = PBKDF2HMAC(
        algorithm=hashes.SHA256(), length=2 * _W_LENGTH, salt=parameters.salt, iterations=parameters.iterations
    )
    ws = kdf.derive(passcode.value.to_bytes(4, "little"))
    w0 = int.from_bytes(ws[:_W_LENGTH], "big") % P256_ORDER
    w1 = int.from_bytes(ws[_W_LENGTH:], "big") % P256_ORDER
    # w1 = 0 has probability 2**-256; derive_private_key would refuse it rather than give the point at infinity.
    point = ec.derive_private_key(w1, ec.SECP256R1()).public_key()
    return w0.to_bytes(32, "big") + point.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
