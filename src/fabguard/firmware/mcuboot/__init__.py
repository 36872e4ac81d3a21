"""MCUboot images: signed (ECDSA P-256) and encrypted (ECIES-P256) for a product's bootloader, with imgtool.

``image`` is the format (header, TLV areas, the version field, the signature check), ``build`` makes an
image with MCUboot's own ``imgtool`` without the signing key ever reaching the disk, ``decrypt`` is the
reference decryption of MCUboot's ``ENC_EC256`` scheme (what the bootloader does on the device). The names
below are the public ones: import them from here.
"""

from __future__ import annotations

from fabguard.firmware.mcuboot.build import (
    ImgtoolError,
    build_mcuboot_image,
    imgtool_available,
    imgtool_version,
    run_imgtool,
)
from fabguard.firmware.mcuboot.decrypt import McubootDecryptError, decrypt_mcuboot_image, decrypted_hash_region
from fabguard.firmware.mcuboot.image import (
    IMAGE_F_ENCRYPTED_AES128,
    IMAGE_F_ENCRYPTED_AES256,
    IMAGE_MAGIC,
    IMAGE_TLV_ENC_EC256,
    IMAGE_TLV_SHA256,
    McubootError,
    McubootImage,
    check_version,
    parse_mcuboot_image,
    verify_mcuboot_signature,
)

__all__ = [
    "IMAGE_F_ENCRYPTED_AES128",
    "IMAGE_F_ENCRYPTED_AES256",
    "IMAGE_MAGIC",
    "IMAGE_TLV_ENC_EC256",
    "IMAGE_TLV_SHA256",
    "ImgtoolError",
    "McubootDecryptError",
    "McubootError",
    "McubootImage",
    "build_mcuboot_image",
    "check_version",
    "decrypt_mcuboot_image",
    "decrypted_hash_region",
    "imgtool_available",
    "imgtool_version",
    "parse_mcuboot_image",
    "run_imgtool",
    "verify_mcuboot_signature",
]
