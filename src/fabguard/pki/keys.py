"""Private keys at rest: encrypted PKCS#8 files, never plaintext on disk.

The passphrase comes from the environment (``FABGUARD_KEY_PASSPHRASE``) or a file named by
``FABGUARD_KEY_PASSPHRASE_FILE``; it is never a command-line argument and never logged.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

from fabguard.domain.errors import ConfigurationError

PASSPHRASE_ENV = "FABGUARD_KEY_PASSPHRASE"
PASSPHRASE_FILE_ENV = "FABGUARD_KEY_PASSPHRASE_FILE"
MIN_PASSPHRASE = 12

SigningKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def passphrase_from_env(env: Mapping[str, str] | None = None) -> bytes:
    """Read the key passphrase from the environment or the file it names."""
    env = os.environ if env is None else env
    value = env.get(PASSPHRASE_ENV)
    if not value and env.get(PASSPHRASE_FILE_ENV):
        path = Path(env[PASSPHRASE_FILE_ENV])
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigurationError(f"cannot read the key passphrase file {path}: {exc.strerror}") from None
    if not value:
        raise ConfigurationError(
            f"no key passphrase: set {PASSPHRASE_ENV} or point {PASSPHRASE_FILE_ENV} at a file holding it"
        )
    if len(value) < MIN_PASSPHRASE:
        raise ConfigurationError(f"the key passphrase must be at least {MIN_PASSPHRASE} characters")
    return value.encode("utf-8")


PIN_ENV = "FABGUARD_PKCS11_PIN"
PIN_FILE_ENV = "FABGUARD_PKCS11_PIN_FILE"


def pin_from_env(env: Mapping[str, str] | None = None) -> bytes:
    """The HSM user PIN, from the environment or the file it names (never an argument, never logged)."""
    env = os.environ if env is None else env
    value = env.get(PIN_ENV)
    if not value and env.get(PIN_FILE_ENV):
        try:
            value = Path(env[PIN_FILE_ENV]).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigurationError(f"cannot read the PIN file: {exc.strerror}") from None
    if not value:
        raise ConfigurationError(f"no HSM PIN: set {PIN_ENV} or point {PIN_FILE_ENV} at a file holding it")
    return value.encode("utf-8")


def new_signing_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def write_encrypted_key(key: PrivateKeyTypes, path: Path, passphrase: bytes) -> None:
    """Write ``key`` as passphrase-encrypted PKCS#8 PEM, readable by the owner only."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # the mode argument only applies when the file is created
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)


def read_encrypted_key(path: Path, passphrase: bytes) -> SigningKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read key file {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except (ValueError, TypeError):
        raise ConfigurationError(
            f"cannot decrypt {path.name}: wrong key passphrase, or the file is not an encrypted key"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        raise ConfigurationError(f"{path.name} holds a key type FabGuard does not sign with")
    return key


def spki_fingerprint(public_key: PublicKeyTypes) -> str:
    """SHA-256 of the DER SubjectPublicKeyInfo, hex: the identity of a key across CSRs."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def key_identifiers(public_key: PublicKeyTypes) -> tuple[str, bytes]:
    """:func:`spki_fingerprint` and the subject key identifier a certificate of the key carries (RFC 5280
    4.2.1.2 method 1, as ``x509.SubjectKeyIdentifier.from_public_key`` computes it: SHA-1 of the
    subjectPublicKey bits), from one encoding of the key."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    start, _ = _content(der, 0)  # SubjectPublicKeyInfo ::= SEQUENCE { algorithm, subjectPublicKey BIT STRING }
    _, algorithm_end = _content(der, start)
    if der[algorithm_end] != 0x03:
        raise ValueError("a SubjectPublicKeyInfo without its BIT STRING")
    bits, end = _content(der, algorithm_end)
    key_id = hashlib.sha1(der[bits + 1 : end], usedforsecurity=False).digest()  # after the unused-bits octet
    return hashlib.sha256(der).hexdigest(), key_id


def _content(der: bytes, at: int) -> tuple[int, int]:
    """Where the content of the DER element at ``at`` starts and ends."""
    length, at = der[at + 1], at + 2
    if length & 0x80:
        octets = length & 0x7F
        length, at = int.from_bytes(der[at : at + octets], "big"), at + octets
    return at, at + length
