"""The device's side of encrypted firmware: the reference decryptor a unit runs, and the fixture's fetch.

A package is what a fixture receives for one unit and carries to it: the signed manifest, the release's
data key wrapped to that unit's public key (ECIES P-256), and the image ciphertext (AES-256-GCM). The
device checks the manifest signature with the firmware public key it pins, unwraps the data key with its
own private key, decrypts, and checks size and SHA-256 against the manifest. Any altered byte ends in a
:class:`FirmwarePackageError` naming the step that failed; nothing half-checked is ever returned.

Written from the format alone (``cryptography`` only, no server imports), so it doubles as the
independent implementation the server's envelope is tested against. Layout::

    "FGFWPKG1" || lv(manifest) || lv(signature) || lv(ephemeral P-256 point, 65 bytes)
               || lv(wrap nonce, 12) || lv(wrapped data key, 48) || lv(image ciphertext)

where ``lv(x)`` is ``len(x)`` as u32 big-endian followed by ``x``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import struct
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fabguard_station.client import FixtureClient
from fabguard_station.errors import FixtureError

PACKAGE_MAGIC = b"FGFWPKG1"
MANIFEST_FORMAT = "fabguard-firmware-manifest/1"
MEDIA_TYPE = "application/vnd.fabguard.firmware-package"
_IMAGE_AAD = b"fabguard-firmware/1 image\x00"
_WRAP_AAD = b"fabguard-firmware/1 unit-wrap\x00"
_WRAP_INFO = b"fabguard-firmware/1 ecies-p256-hkdf-sha256-aes256gcm\x00"
_FIELDS = 6
_MAX_MANIFEST = 64 * 1024

FirmwarePublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


class FirmwarePackageError(FixtureError):
    """The package must not be installed: ``step`` says which check failed, ``code`` names the rejection."""

    code = "package_rejected"
    step = "package"

    def __str__(self) -> str:
        return f"{self.step}: {self.message}"


class PackageMalformed(FirmwarePackageError):
    code = "package_malformed"
    step = "malformed"


class ManifestSignatureInvalid(FirmwarePackageError):
    code = "manifest_signature_invalid"
    step = "manifest_signature"


class ManifestInvalid(FirmwarePackageError):
    code = "manifest_invalid"
    step = "manifest"


class NotForThisDevice(FirmwarePackageError):
    code = "not_for_this_device"
    step = "key_unwrap"


class ImageCorrupt(FirmwarePackageError):
    code = "image_corrupt"
    step = "image"


@dataclass(frozen=True)
class FirmwarePackage:
    manifest: bytes
    signature: bytes
    ephemeral_public_key: bytes
    wrap_nonce: bytes
    wrapped_key: bytes
    image_ciphertext: bytes


@dataclass(frozen=True)
class OpenedFirmware:
    manifest: dict[str, Any]
    image: bytes

    @property
    def release_id(self) -> str:
        return str(self.manifest["release_id"])

    @property
    def version(self) -> str:
        return str(self.manifest["version"])


def _lv(*parts: bytes) -> bytes:
    return b"".join(struct.pack(">I", len(p)) + p for p in parts)


def parse_package(data: bytes) -> FirmwarePackage:
    if not data.startswith(PACKAGE_MAGIC):
        raise PackageMalformed("not a FabGuard firmware package (bad magic)")
    fields: list[bytes] = []
    at = len(PACKAGE_MAGIC)
    for _ in range(_FIELDS):
        if at + 4 > len(data):
            raise PackageMalformed("truncated")
        (n,) = struct.unpack_from(">I", data, at)
        at += 4
        if at + n > len(data):
            raise PackageMalformed("a field runs past the end")
        fields.append(data[at : at + n])
        at += n
    if at != len(data):
        raise PackageMalformed("trailing bytes after the last field")
    package = FirmwarePackage(*fields)
    if len(package.manifest) > _MAX_MANIFEST:
        raise PackageMalformed("manifest too large")
    return package


def load_firmware_public_key(pem: bytes) -> FirmwarePublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        raise ValueError("the firmware key must be an EC or Ed25519 public key")
    return key


def _verify(public_key: FirmwarePublicKey, manifest: bytes, signature: bytes) -> None:
    try:
        if isinstance(public_key, ed25519.Ed25519PublicKey):
            public_key.verify(signature, manifest)
        else:
            public_key.verify(signature, manifest, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise ManifestSignatureInvalid("not signed by the pinned firmware key, or altered") from None


def _manifest(data: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise ManifestInvalid("not JSON") from None
    needed: dict[str, type] = {
        "format": str,
        "release_id": str,
        "version": str,
        "size": int,
        "sha256": str,
        "ciphertext_sha256": str,
        "image_nonce": str,
    }
    if not isinstance(doc, dict) or any(not isinstance(doc.get(k), t) for k, t in needed.items()):
        raise ManifestInvalid("missing or mistyped fields")
    if doc["format"] != MANIFEST_FORMAT:
        raise ManifestInvalid(f"unknown format {doc['format']!r}")
    return doc


def _point(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def _unwrap(package: FirmwarePackage, device_key: ec.EllipticCurvePrivateKey, serial: str, release_id: str) -> bytes:
    aad = _WRAP_AAD + _lv(serial.encode(), release_id.encode(), hashlib.sha256(package.manifest).digest())
    try:
        ephemeral = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), package.ephemeral_public_key)
        shared = device_key.exchange(ec.ECDH(), ephemeral)
        key = HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=None,
            info=_WRAP_INFO + package.ephemeral_public_key + _point(device_key.public_key()),
        ).derive(shared)
        return AESGCM(key).decrypt(package.wrap_nonce, package.wrapped_key, aad)
    except (InvalidTag, ValueError):
        raise NotForThisDevice(
            f"the data key was not wrapped for unit {serial} with this key, or was altered"
        ) from None


def open_package(
    data: bytes, *, device_key: ec.EllipticCurvePrivateKey, serial: str, firmware_key: FirmwarePublicKey
) -> OpenedFirmware:
    """Verify and decrypt a package for this device; the image is returned only when every check passed."""
    package = parse_package(data)
    _verify(firmware_key, package.manifest, package.signature)
    manifest = _manifest(package.manifest)
    release_id = manifest["release_id"]
    if not hmac.compare_digest(hashlib.sha256(package.image_ciphertext).hexdigest(), manifest["ciphertext_sha256"]):
        raise ImageCorrupt("the ciphertext's SHA-256 differs from the signed manifest's")
    data_key = _unwrap(package, device_key, serial, release_id)
    try:
        nonce = base64.b64decode(manifest["image_nonce"], validate=True)
        image = AESGCM(data_key).decrypt(nonce, package.image_ciphertext, _IMAGE_AAD + _lv(release_id.encode()))
    except (InvalidTag, ValueError, binascii.Error):
        raise ImageCorrupt("the image does not decrypt") from None
    if len(image) != manifest["size"] or not hmac.compare_digest(hashlib.sha256(image).hexdigest(), manifest["sha256"]):
        raise ImageCorrupt("the decrypted image's size or SHA-256 differs from the signed manifest's")
    return OpenedFirmware(manifest, image)


def fetch_package(client: FixtureClient, *, order_id: str, serial: str, release_id: str) -> bytes:
    """Ask the server for one unit's package with a :class:`~fabguard_station.client.FixtureClient`.

    Refusals raise :class:`~fabguard_station.client.FabGuardClientError` with the refusal code.
    """
    return client.fetch_firmware(order_id, serial, release_id)


__all__ = [
    "MEDIA_TYPE",
    "FirmwarePackage",
    "FirmwarePackageError",
    "FirmwarePublicKey",
    "ImageCorrupt",
    "ManifestInvalid",
    "ManifestSignatureInvalid",
    "NotForThisDevice",
    "OpenedFirmware",
    "PackageMalformed",
    "fetch_package",
    "load_firmware_public_key",
    "open_package",
    "parse_package",
]
