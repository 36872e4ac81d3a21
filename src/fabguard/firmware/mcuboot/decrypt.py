"""The reference decryption of an ECIES-P256 encrypted MCUboot image, as the bootloader does it.

:func:`decrypt_mcuboot_image` does what MCUboot's ``ENC_EC256`` scheme does on the device (imgtool 2.5.0
``image.py`` ``ecies_hkdf`` and ``create``): the ``ENC_EC256`` TLV (0x32) holds the ephemeral public key
(65 bytes, uncompressed), an HMAC-SHA256 tag (32) and the encrypted AES key (16, or 32 for AES-256); ECDH
with the bootloader's private key, HKDF-SHA256 (no salt, info ``MCUBoot_ECIES_v1``) to the AES key +
32-byte HMAC key, the tag is over the encrypted key, the key is AES-CTR encrypted with a zero counter
block, and so is the image body (from the end of the header, ``img_size`` bytes). imgtool pads the body
with zeros to a multiple of 16 bytes before encrypting, so the plaintext is the firmware followed by up to
15 zero bytes. The decrypted image is then checked against its SHA256 TLV, as MCUboot does.
``cryptography`` primitives only.
"""

from __future__ import annotations

import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fabguard.firmware.mcuboot.image import (
    IMAGE_F_COMPRESSED,
    IMAGE_F_ENCRYPTED_AES128,
    IMAGE_F_ENCRYPTED_AES256,
    IMAGE_TLV_ENC_EC256,
    IMAGE_TLV_SHA256,
    McubootError,
    McubootImage,
    parse_mcuboot_image,
)

ECIES_HKDF_INFO = b"MCUBoot_ECIES_v1"
EC256_POINT_BYTES = 65
HMAC_SHA256_BYTES = 32
ZERO_COUNTER = bytes(16)


class McubootDecryptError(McubootError):
    """An encrypted MCUboot image does not open: wrong key, or altered bytes."""

    code = "mcuboot_decrypt_failed"


def decrypt_mcuboot_image(image_bytes: bytes, enc_private_key: ec.EllipticCurvePrivateKey) -> bytes:
    """The plaintext body of an ECIES-P256 encrypted MCUboot image, checked against its SHA256 TLV.

    ``enc_private_key`` is the bootloader's encryption private key. The result is the firmware as the
    bootloader sees it after decryption: imgtool zero-pads it to a multiple of 16 bytes.
    :class:`McubootDecryptError` for a wrong key, an altered key TLV or an altered body.
    """
    return _decrypt(image_bytes, enc_private_key)[1]


def decrypted_hash_region(image_bytes: bytes, enc_private_key: ec.EllipticCurvePrivateKey) -> bytes:
    """The bytes MCUboot hashes and signs for an encrypted image (for :func:`verify_mcuboot_signature`)."""
    return _decrypt(image_bytes, enc_private_key)[2]


def _decrypt(image_bytes: bytes, enc_private_key: ec.EllipticCurvePrivateKey) -> tuple[McubootImage, bytes, bytes]:
    """(parsed image, plaintext body, plaintext hash region)."""
    parsed = parse_mcuboot_image(image_bytes)
    if parsed.flags & IMAGE_F_COMPRESSED:
        raise McubootError("compressed MCUboot images are not supported")
    if parsed.flags & IMAGE_F_ENCRYPTED_AES256:
        key_len = 32
    elif parsed.flags & IMAGE_F_ENCRYPTED_AES128:
        key_len = 16
    else:
        raise McubootError("the image is not encrypted (no ENCRYPTED_AES128/256 flag)")
    if not isinstance(enc_private_key, ec.EllipticCurvePrivateKey) or not isinstance(
        enc_private_key.curve, ec.SECP256R1
    ):
        raise McubootError("MCUboot ECIES-P256 needs a P-256 private key")
    enc_tlv = parsed.tlv(IMAGE_TLV_ENC_EC256)
    if enc_tlv is None:
        raise McubootError("the image has no ENC_EC256 TLV (0x32): not encrypted with ECIES-P256")
    if len(enc_tlv) != EC256_POINT_BYTES + HMAC_SHA256_BYTES + key_len:
        raise McubootDecryptError(f"the ENC_EC256 TLV is {len(enc_tlv)} bytes, not an AES-{key_len * 8} key's")
    point = enc_tlv[:EC256_POINT_BYTES]
    tag = enc_tlv[EC256_POINT_BYTES : EC256_POINT_BYTES + HMAC_SHA256_BYTES]
    wrapped = enc_tlv[EC256_POINT_BYTES + HMAC_SHA256_BYTES :]
    try:
        ephemeral = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError:
        raise McubootDecryptError("the ENC_EC256 TLV's ephemeral key is not a P-256 point (altered?)") from None
    shared = enc_private_key.exchange(ec.ECDH(), ephemeral)
    derived = HKDF(
        algorithm=hashes.SHA256(), length=key_len + HMAC_SHA256_BYTES, salt=None, info=ECIES_HKDF_INFO
    ).derive(shared)
    mac = hmac.HMAC(derived[key_len:], hashes.SHA256())
    mac.update(wrapped)
    try:
        mac.verify(tag)
    except InvalidSignature:
        raise McubootDecryptError(
            "the image key's MAC does not match: the image was not encrypted to this key, or its ENC_EC256 TLV "
            "was altered"
        ) from None
    image_key = _aes_ctr(derived[:key_len], wrapped)
    start, end = parsed.body_range
    body = _aes_ctr(image_key, image_bytes[start:end])
    region = image_bytes[:start] + body + image_bytes[end : parsed.hash_region_end]
    if parsed.tlv(IMAGE_TLV_SHA256) != hashlib.sha256(region).digest():
        raise McubootDecryptError("the decrypted image does not match its SHA256 TLV: altered ciphertext or header")
    return parsed, body, region


def _aes_ctr(key: bytes, data: bytes) -> bytes:
    decryptor = Cipher(algorithms.AES(key), modes.CTR(ZERO_COUNTER)).decryptor()
    return decryptor.update(data) + decryptor.finalize()


__all__ = ["McubootDecryptError", "decrypt_mcuboot_image", "decrypted_hash_region"]
