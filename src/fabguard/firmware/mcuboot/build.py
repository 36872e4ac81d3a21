"""Building an MCUboot image with MCUboot's own imgtool, the signing key kept off the disk.

:func:`build_mcuboot_image` runs MCUboot's own ``imgtool`` (a subprocess of this interpreter, ``python -m
imgtool.main``) so the image is exactly what the bootloader expects. The signing key never reaches the disk
and never reaches imgtool: imgtool cannot take a key passphrase non-interactively (its ``load_key`` only
asks ``getpass`` on the terminal), so instead of handing it a key file we use its external-signature mode:

1. ``imgtool sign ... --vector-to-sign payload`` writes the bytes MCUboot hashes and signs (image header,
   plaintext body, protected TLVs);
2. we sign them here, ``ECDSA(SHA-256)`` with the key object (so a non-extractable HSM key works too);
3. ``imgtool sign ... --fix-sig SIG --fix-sig-pubkey SIGN_PUB`` builds the image with that signature, the
   public key's hash TLV and, with ``-E ENC_PUB``, the ECIES-P256 encryption TLV, and encrypts the body.

The signed bytes do not depend on the encryption's randomness (MCUboot hashes the plaintext), and we check
the result: its SHA256 TLV must be the digest of the bytes we signed, and the signature must verify. Only
public keys, the signature and the firmware itself are written, into a private temporary directory (0700,
files 0600) that the ``with`` block removes however it ends.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fabguard.firmware.mcuboot.image import (
    IMAGE_TLV_SHA256,
    McubootError,
    check_version,
    parse_mcuboot_image,
    verify_mcuboot_signature,
)

DEFAULT_HEADER_SIZE = 0x200
DEFAULT_ALIGN = 8
IMGTOOL_TIMEOUT_SECONDS = 120.0


class ImgtoolError(McubootError):
    """imgtool is missing, or refused or failed a command."""

    code = "imgtool_failed"
    status = 500


def imgtool_available() -> bool:
    """Whether imgtool is installed for this interpreter (``pip install imgtool``)."""
    return importlib.util.find_spec("imgtool") is not None


def imgtool_command() -> list[str]:
    """How to run imgtool: as a module of this interpreter, so the venv's imgtool and cryptography are used."""
    return [sys.executable, "-m", "imgtool.main"]


def run_imgtool(*args: str | os.PathLike[str], cwd: Path | None = None) -> str:
    """Run one imgtool command and return its standard output; :class:`ImgtoolError` if it fails."""
    if not imgtool_available():
        raise ImgtoolError("imgtool is not installed (pip install imgtool)")
    try:
        done = subprocess.run(
            [*imgtool_command(), *(os.fspath(a) for a in args)],
            cwd=cwd,
            stdin=subprocess.DEVNULL,  # never let it wait for a passphrase on a terminal
            capture_output=True,
            text=True,
            timeout=IMGTOOL_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ImgtoolError(f"imgtool {args[0]!s} did not finish in {IMGTOOL_TIMEOUT_SECONDS:.0f} s") from None
    if done.returncode != 0:
        detail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-3:]
        raise ImgtoolError(f"imgtool {args[0]!s} failed (exit {done.returncode}): {' / '.join(detail)}")
    return done.stdout


def imgtool_version() -> str:
    return run_imgtool("version").strip()


def build_mcuboot_image(
    firmware: bytes,
    *,
    signing_key: ec.EllipticCurvePrivateKey,
    encryption_key_pem: bytes | None,
    version: str,
    slot_size: int,
    header_size: int = DEFAULT_HEADER_SIZE,
    align: int = DEFAULT_ALIGN,
    aes_key_bits: int = 128,
) -> bytes:
    """The MCUboot image of ``firmware``: signed with ``signing_key``, encrypted to ``encryption_key_pem``.

    ``encryption_key_pem`` is the bootloader's ECIES-P256 public key (PEM), or None for a signed image
    that is not encrypted. ``version`` is MCUboot's ``major.minor.revision+build`` (later parts optional).
    The header is padded in (``--pad-header``); the image is not padded to the slot, whose size
    (``slot_size``) imgtool checks the image and its trailer fit in.
    """
    if not firmware:
        raise McubootError("the firmware image is empty")
    if not isinstance(signing_key, ec.EllipticCurvePrivateKey) or not isinstance(signing_key.curve, ec.SECP256R1):
        raise McubootError("the MCUboot signing key must be an ECDSA P-256 private key")
    if aes_key_bits not in (128, 256):
        raise McubootError("the image key is AES-128 or AES-256")
    check_version(version)
    sign_pub = signing_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    enc_pub = _encryption_public_pem(encryption_key_pem) if encryption_key_pem is not None else None
    common = [
        "--header-size",
        hex(header_size),
        "--pad-header",
        "--align",
        str(align),
        "-v",
        version,
        "-S",
        hex(slot_size),
    ]
    if enc_pub is not None:
        common += ["--encrypt-keylen", str(aes_key_bits)]
    # No private key is ever written. The directory (mkdtemp: 0700) is removed when the block ends, even on error.
    with tempfile.TemporaryDirectory(prefix="fabguard-mcuboot-") as tmp:
        work = Path(tmp)
        _write_private(work / "firmware.bin", firmware)
        _write_private(work / "sign-pub.pem", sign_pub)
        if enc_pub is not None:
            _write_private(work / "enc-pub.pem", enc_pub)
            common += ["-E", "enc-pub.pem"]
        run_imgtool("sign", *common, "--vector-to-sign", "payload", "firmware.bin", "payload.bin", cwd=work)
        signed = (work / "payload.bin").read_bytes()
        signature = signing_key.sign(signed, ec.ECDSA(hashes.SHA256()))
        _write_private(work / "signature.b64", base64.b64encode(signature))
        run_imgtool(
            "sign",
            *common,
            "--fix-sig",
            "signature.b64",
            "--fix-sig-pubkey",
            "sign-pub.pem",
            "firmware.bin",
            "image.bin",
            cwd=work,
        )
        image = (work / "image.bin").read_bytes()
    _check_signed(image, signed, signing_key.public_key())
    return image


def _encryption_public_pem(pem: bytes) -> bytes:
    """The bootloader's encryption key as a P-256 public key PEM, re-encoded (never a private key on disk)."""
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError:
        raise McubootError("the encryption key must be a PEM public key (the bootloader's, P-256)") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise McubootError("MCUboot ECIES-P256 encryption needs a P-256 public key")
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _check_signed(image: bytes, signed: bytes, public_key: ec.EllipticCurvePublicKey) -> None:
    """The image imgtool built carries the hash of the bytes we signed, and our signature verifies."""
    parsed = parse_mcuboot_image(image)
    if parsed.tlv(IMAGE_TLV_SHA256) != hashlib.sha256(signed).digest():
        raise McubootError("imgtool's image does not hash to the bytes that were signed")
    verify_mcuboot_signature(image, public_key, parsed=parsed, hash_region=signed)


__all__ = [
    "ImgtoolError",
    "build_mcuboot_image",
    "imgtool_available",
    "imgtool_command",
    "imgtool_version",
    "run_imgtool",
]
