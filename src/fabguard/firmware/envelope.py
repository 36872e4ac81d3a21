"""Firmware envelopes, pure crypto (pyca ``cryptography`` primitives only, no I/O).

Three layers of keys:

* a per-release **data key** (AES-256) encrypts the image once, with AES-GCM; the image is bound to its
  release id through the associated data. That ciphertext is what is stored and what every unit receives;
* at rest, the data key is wrapped (AES-256-GCM, release id as associated data) by the instance's
  **key-encryption key**, itself kept in a file sealed with the instance passphrase (scrypt + AES-GCM);
* per unit, the data key is wrapped to the unit's P-256 public key (ECIES: ephemeral ECDH, HKDF-SHA256,
  AES-256-GCM with the unit serial, the release id and the manifest digest as associated data), so only
  that device can open it and the fixture only ever carries ciphertext.

The manifest (canonical JSON) is signed by the firmware signing key; the device pins its public key.
The device's side lives in :mod:`fabguard.fixture.firmware` (no server imports); the labels below and
the package layout are the format both sides speak, and tests check they agree.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from fabguard.domain.errors import FabGuardError

MANIFEST_FORMAT = "fabguard-firmware-manifest/1"
PACKAGE_MAGIC = b"FGFWPKG1"
PACKAGE_MEDIA_TYPE = "application/vnd.fabguard.firmware-package"
IMAGE_AAD_LABEL = b"fabguard-firmware/1 image\x00"
DATA_KEY_AAD_LABEL = b"fabguard-firmware/1 data-key\x00"
UNIT_WRAP_AAD_LABEL = b"fabguard-firmware/1 unit-wrap\x00"
UNIT_WRAP_HKDF_INFO = b"fabguard-firmware/1 ecies-p256-hkdf-sha256-aes256gcm\x00"
KEK_AAD = b"fabguard-firmware/1 kek\x00"
KEK_FORMAT = "fabguard-firmware-kek/1"
NONCE_BYTES = 12
KEY_BYTES = 32
# scrypt at 2^15 x 8: about 32 MiB and a tenth of a second, paid once per process when the KEK is opened.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1

ManifestSigningKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
ManifestVerifyKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


class EnvelopeError(FabGuardError):
    """A firmware envelope failed to open: wrong key, or altered bytes.

    On the server the envelope is its own sealed material, so this is the server's failure (500).
    """

    code = "firmware_envelope_invalid"
    status = 500


def _lv(*parts: bytes) -> bytes:
    """Length-prefixed concatenation: no two different part lists give the same bytes."""
    return b"".join(struct.pack(">I", len(p)) + p for p in parts)


def image_aad(release_id: str) -> bytes:
    return IMAGE_AAD_LABEL + _lv(release_id.encode())


def data_key_aad(release_id: str) -> bytes:
    return DATA_KEY_AAD_LABEL + _lv(release_id.encode())


def unit_wrap_aad(serial: str, release_id: str, manifest_sha256: bytes) -> bytes:
    return UNIT_WRAP_AAD_LABEL + _lv(serial.encode(), release_id.encode(), manifest_sha256)


# At rest
@dataclass(frozen=True)
class SealedImage:
    """An image encrypted under a fresh data key; the data key itself is returned to be wrapped."""

    data_key: bytes
    nonce: bytes
    ciphertext: bytes


def seal_image(image: bytes, release_id: str) -> SealedImage:
    data_key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(NONCE_BYTES)
    return SealedImage(data_key, nonce, AESGCM(data_key).encrypt(nonce, image, image_aad(release_id)))


def open_image(data_key: bytes, nonce: bytes, ciphertext: bytes, release_id: str) -> bytes:
    try:
        return AESGCM(data_key).decrypt(nonce, ciphertext, image_aad(release_id))
    except InvalidTag:
        raise EnvelopeError("the image does not decrypt: wrong data key or altered ciphertext") from None


def wrap_data_key(kek: bytes, data_key: bytes, release_id: str) -> tuple[bytes, bytes]:
    """Wrap a release's data key under the KEK; returns (nonce, wrapped key)."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce, AESGCM(kek).encrypt(nonce, data_key, data_key_aad(release_id))


def unwrap_data_key(kek: bytes, nonce: bytes, wrapped: bytes, release_id: str) -> bytes:
    try:
        return AESGCM(kek).decrypt(nonce, wrapped, data_key_aad(release_id))
    except InvalidTag:
        raise EnvelopeError(f"the data key of release {release_id} does not unwrap: wrong KEK or altered") from None


def kek_id(kek: bytes) -> str:
    """A short public name for a KEK (so a release names the KEK that wraps it; rotation stays possible)."""
    return hashlib.sha256(b"fabguard-firmware/1 kek-id\x00" + kek).hexdigest()[:16]


def new_kek() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def _scrypt(salt: bytes, passphrase: bytes) -> bytes:
    return Scrypt(salt=salt, length=KEY_BYTES, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P).derive(passphrase)


def seal_kek(kek: bytes, passphrase: bytes) -> bytes:
    """The KEK file's content: the KEK under a key derived from the passphrase (scrypt), AES-GCM."""
    salt, nonce = os.urandom(16), os.urandom(NONCE_BYTES)
    ciphertext = AESGCM(_scrypt(salt, passphrase)).encrypt(nonce, kek, KEK_AAD)
    doc = {
        "format": KEK_FORMAT,
        "kdf": {"name": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P, "salt": _b64(salt)},
        "cipher": "AES-256-GCM",
        "nonce": _b64(nonce),
        "ciphertext": _b64(ciphertext),
    }
    return (json.dumps(doc, indent=2) + "\n").encode()


def open_kek(sealed: bytes, passphrase: bytes) -> bytes:
    try:
        doc = json.loads(sealed)
        if doc["format"] != KEK_FORMAT or doc["kdf"]["name"] != "scrypt":
            raise EnvelopeError("not a FabGuard firmware KEK file")
        kdf = doc["kdf"]
        key = Scrypt(
            salt=base64.b64decode(kdf["salt"]), length=KEY_BYTES, n=int(kdf["n"]), r=int(kdf["r"]), p=int(kdf["p"])
        ).derive(passphrase)
        return AESGCM(key).decrypt(base64.b64decode(doc["nonce"]), base64.b64decode(doc["ciphertext"]), KEK_AAD)
    except InvalidTag:
        raise EnvelopeError("cannot open the firmware KEK: wrong key passphrase, or the file was altered") from None
    except (ValueError, KeyError, TypeError):
        raise EnvelopeError("the firmware KEK file is not readable") from None


# Per unit
@dataclass(frozen=True)
class UnitWrap:
    """A data key wrapped to one unit's public key."""

    ephemeral_public_key: bytes  # uncompressed SEC1 point, 65 bytes
    nonce: bytes
    ciphertext: bytes


def _point(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def _unit_wrap_key(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=UNIT_WRAP_HKDF_INFO + ephemeral + recipient
    ).derive(shared)


def wrap_to_unit(
    data_key: bytes, unit_key: ec.EllipticCurvePublicKey, *, serial: str, release_id: str, manifest_sha256: bytes
) -> UnitWrap:
    """ECIES: only the holder of the unit's private key (the device) can recover the data key."""
    if not isinstance(unit_key.curve, ec.SECP256R1):
        raise EnvelopeError(f"unit keys must be P-256 to receive firmware, not {unit_key.curve.name}")
    ephemeral = ec.generate_private_key(ec.SECP256R1())
    eph_point, recipient = _point(ephemeral.public_key()), _point(unit_key)
    key = _unit_wrap_key(ephemeral.exchange(ec.ECDH(), unit_key), eph_point, recipient)
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = AESGCM(key).encrypt(nonce, data_key, unit_wrap_aad(serial, release_id, manifest_sha256))
    return UnitWrap(eph_point, nonce, ciphertext)


def unwrap_for_unit(
    wrap: UnitWrap, unit_key: ec.EllipticCurvePrivateKey, *, serial: str, release_id: str, manifest_sha256: bytes
) -> bytes:
    try:
        ephemeral = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), wrap.ephemeral_public_key)
        key = _unit_wrap_key(
            unit_key.exchange(ec.ECDH(), ephemeral), wrap.ephemeral_public_key, _point(unit_key.public_key())
        )
        return AESGCM(key).decrypt(wrap.nonce, wrap.ciphertext, unit_wrap_aad(serial, release_id, manifest_sha256))
    except (InvalidTag, ValueError):
        raise EnvelopeError("the data key does not unwrap with this unit's key (another unit's, or altered)") from None


# Manifest
def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sign_manifest(key: ManifestSigningKey, manifest: bytes) -> bytes:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(manifest)
    return key.sign(manifest, ec.ECDSA(hashes.SHA256()))


def verify_manifest(public_key: ManifestVerifyKey, manifest: bytes, signature: bytes) -> None:
    try:
        if isinstance(public_key, ed25519.Ed25519PublicKey):
            public_key.verify(signature, manifest)
        else:
            public_key.verify(signature, manifest, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise EnvelopeError("the manifest signature does not verify with the firmware key") from None


def key_fingerprint(public_key: ManifestVerifyKey) -> str:
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


# The package a fixture carries to one unit
def encode_package(manifest: bytes, signature: bytes, wrap: UnitWrap, image_ciphertext: bytes) -> bytes:
    """``MAGIC`` then six length-prefixed fields (u32 big-endian), in this order; nothing after them."""
    return PACKAGE_MAGIC + _lv(
        manifest, signature, wrap.ephemeral_public_key, wrap.nonce, wrap.ciphertext, image_ciphertext
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


__all__ = [
    "MANIFEST_FORMAT",
    "PACKAGE_MAGIC",
    "PACKAGE_MEDIA_TYPE",
    "EnvelopeError",
    "ManifestSigningKey",
    "ManifestVerifyKey",
    "SealedImage",
    "UnitWrap",
    "canonical_json",
    "data_key_aad",
    "encode_package",
    "image_aad",
    "kek_id",
    "key_fingerprint",
    "new_kek",
    "open_image",
    "open_kek",
    "seal_image",
    "seal_kek",
    "sign_manifest",
    "unit_wrap_aad",
    "unwrap_data_key",
    "unwrap_for_unit",
    "verify_manifest",
    "wrap_data_key",
    "wrap_to_unit",
]
