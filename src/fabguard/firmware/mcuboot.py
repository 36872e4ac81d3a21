"""MCUboot images: signed (ECDSA P-256) and encrypted (ECIES-P256) for a product's bootloader, with imgtool.

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

:func:`decrypt_mcuboot_image` is the reference decryption of what MCUboot's ``ENC_EC256`` scheme does on the
device (imgtool 2.5.0 ``image.py`` ``ecies_hkdf`` and ``create``): the ``ENC_EC256`` TLV (0x32) holds the
ephemeral public key (65 bytes, uncompressed), an HMAC-SHA256 tag (32) and the encrypted AES key (16, or 32
for AES-256); ECDH with the bootloader's private key, HKDF-SHA256 (no salt, info ``MCUBoot_ECIES_v1``) to the
AES key + 32-byte HMAC key, the tag is over the encrypted key, the key is AES-CTR encrypted with a zero
counter block, and so is the image body (from the end of the header, ``img_size`` bytes). imgtool pads the
body with zeros to a multiple of 16 bytes before encrypting, so the plaintext is the firmware followed by
up to 15 zero bytes. The decrypted image is then checked against its SHA256 TLV, as MCUboot does.
``cryptography`` primitives only.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import os
import re
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fabguard.domain.errors import FabGuardError

IMAGE_MAGIC = 0x96F3B83D
IMAGE_HEADER_FORMAT = "<IIHHIIBBHII"  # magic, load_addr, hdr_size, prot_tlv_size, img_size, flags, version, pad
IMAGE_HEADER_BYTES = struct.calcsize(IMAGE_HEADER_FORMAT)
IMAGE_F_ENCRYPTED_AES128 = 0x04
IMAGE_F_ENCRYPTED_AES256 = 0x08
IMAGE_F_COMPRESSED = 0x200 | 0x400 | 0x800
TLV_INFO_MAGIC = 0x6907
TLV_PROT_INFO_MAGIC = 0x6908
TLV_INFO_BYTES = 4
TLV_HEADER_BYTES = 4

IMAGE_TLV_KEYHASH = 0x01
IMAGE_TLV_SHA256 = 0x10
IMAGE_TLV_ECDSA_SIG = 0x22
IMAGE_TLV_ENC_EC256 = 0x32

ECIES_HKDF_INFO = b"MCUBoot_ECIES_v1"
EC256_POINT_BYTES = 65
HMAC_SHA256_BYTES = 32
ZERO_COUNTER = bytes(16)

_VERSION = re.compile(r"(0|[1-9]\d*)(?:\.(0|[1-9]\d*)(?:\.(0|[1-9]\d*)(?:\+(0|[1-9]\d*))?)?)?")

DEFAULT_HEADER_SIZE = 0x200
DEFAULT_ALIGN = 8
IMGTOOL_TIMEOUT_SECONDS = 120.0


class McubootError(FabGuardError):
    """An MCUboot image could not be built or read."""

    code = "mcuboot_image_invalid"
    status = 422


class ImgtoolError(McubootError):
    """imgtool is missing, or refused or failed a command."""

    code = "imgtool_failed"
    status = 500


class McubootDecryptError(McubootError):
    """An encrypted MCUboot image does not open: wrong key, or altered bytes."""

    code = "mcuboot_decrypt_failed"


# Building
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


def check_version(version: str) -> tuple[int, int, int, int]:
    """MCUboot's ``major.minor.revision+build`` (later parts optional), each part within its header field."""
    m = _VERSION.fullmatch(version) if isinstance(version, str) else None
    if m is None:
        raise McubootError(f"MCUboot versions are major.minor.revision+build, digits only, not {version!r}")
    parts = tuple(int(p) if p else 0 for p in m.group(1, 2, 3, 4))
    major, minor, revision, build = parts
    if major > 0xFF or minor > 0xFF or revision > 0xFFFF or build > 0xFFFFFFFF:
        raise McubootError(f"version {version!r} does not fit MCUboot's header (u8.u8.u16+u32)")
    return major, minor, revision, build


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


# Reading
@dataclass(frozen=True)
class McubootImage:
    """An MCUboot image's header fields and TLVs (protected and not), as imgtool lays them out."""

    load_addr: int
    header_size: int
    protected_tlv_size: int
    image_size: int
    flags: int
    version: tuple[int, int, int, int]
    protected_tlvs: tuple[tuple[int, bytes], ...]
    tlvs: tuple[tuple[int, bytes], ...]

    @property
    def version_text(self) -> str:
        major, minor, revision, build = self.version
        return f"{major}.{minor}.{revision}+{build}"

    @property
    def body_range(self) -> tuple[int, int]:
        return self.header_size, self.header_size + self.image_size

    @property
    def hash_region_end(self) -> int:
        """MCUboot hashes ``image[:hash_region_end]``: header, body and the protected TLV area."""
        return self.header_size + self.image_size + self.protected_tlv_size

    def tlv(self, kind: int) -> bytes | None:
        """The value of the one unprotected TLV of this type; :class:`McubootError` if there are several."""
        found = [value for t, value in self.tlvs if t == kind]
        if len(found) > 1:
            raise McubootError(f"the image has {len(found)} TLVs of type 0x{kind:02x}")
        return found[0] if found else None


def parse_mcuboot_image(image: bytes) -> McubootImage:
    """Parse a little-endian MCUboot image (imgtool's default); :class:`McubootError` if it is not one."""
    if len(image) < IMAGE_HEADER_BYTES:
        raise McubootError("too short to be an MCUboot image")
    magic, load_addr, hdr_size, prot_size, img_size, flags, major, minor, revision, build, _ = struct.unpack_from(
        IMAGE_HEADER_FORMAT, image
    )
    if magic != IMAGE_MAGIC:
        raise McubootError("not an MCUboot image (bad header magic)")
    if hdr_size < IMAGE_HEADER_BYTES or hdr_size + img_size > len(image):
        raise McubootError("the MCUboot header's sizes do not fit the image")
    offset = hdr_size + img_size
    protected: tuple[tuple[int, bytes], ...] = ()
    if prot_size:
        protected, end = _tlv_area(image, offset, TLV_PROT_INFO_MAGIC)
        if end - offset != prot_size:
            raise McubootError("the protected TLV area's size disagrees with the header")
        offset = end
    tlvs, _ = _tlv_area(image, offset, TLV_INFO_MAGIC)
    return McubootImage(
        load_addr=load_addr,
        header_size=hdr_size,
        protected_tlv_size=prot_size,
        image_size=img_size,
        flags=flags,
        version=(major, minor, revision, build),
        protected_tlvs=protected,
        tlvs=tlvs,
    )


def _tlv_area(image: bytes, offset: int, magic: int) -> tuple[tuple[tuple[int, bytes], ...], int]:
    if offset + TLV_INFO_BYTES > len(image):
        raise McubootError("the image ends before its TLV area")
    found_magic, total = struct.unpack_from("<HH", image, offset)
    if found_magic != magic:
        raise McubootError(f"bad TLV area magic 0x{found_magic:04x} (expected 0x{magic:04x})")
    end = offset + total
    if total < TLV_INFO_BYTES or end > len(image):
        raise McubootError("the TLV area runs past the end of the image")
    out: list[tuple[int, bytes]] = []
    pos = offset + TLV_INFO_BYTES
    while pos < end:
        if pos + TLV_HEADER_BYTES > end:
            raise McubootError("a TLV header runs past its area")
        kind, length = struct.unpack_from("<HH", image, pos)
        pos += TLV_HEADER_BYTES
        if pos + length > end:
            raise McubootError(f"TLV 0x{kind:02x} runs past its area")
        out.append((kind, image[pos : pos + length]))
        pos += length
    return tuple(out), end


def verify_mcuboot_signature(
    image: bytes,
    public_key: ec.EllipticCurvePublicKey,
    *,
    parsed: McubootImage | None = None,
    hash_region: bytes | None = None,
) -> None:
    """Check the ECDSA P-256 signature and the key hash TLV, as MCUboot does.

    For an encrypted image the signed bytes are the *plaintext* header, body and protected TLVs: pass them
    as ``hash_region`` (what :func:`decrypt_mcuboot_image` recovers); by default they are read from ``image``.
    """
    parsed = parsed or parse_mcuboot_image(image)
    region = image[: parsed.hash_region_end] if hash_region is None else hash_region
    if parsed.tlv(IMAGE_TLV_SHA256) != hashlib.sha256(region).digest():
        raise McubootError("the image does not match its SHA256 TLV")
    spki = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    keyhash = parsed.tlv(IMAGE_TLV_KEYHASH)
    if keyhash is not None and keyhash != hashlib.sha256(spki).digest():
        raise McubootError("the image names another signing key (KEYHASH TLV)")
    signature = parsed.tlv(IMAGE_TLV_ECDSA_SIG)
    if signature is None:
        raise McubootError("the image has no ECDSA signature TLV")
    if len(signature) >= 2:
        signature = signature[: signature[1] + 2]  # imgtool's --pad-sig appends zeros after the DER
    try:
        public_key.verify(signature, region, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise McubootError("the image's ECDSA signature does not verify with this key") from None


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


__all__ = [
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
