"""The MCUboot image format: header, protected and unprotected TLV areas, version field, signature check.

Little-endian, as imgtool lays it out by default (imgtool 2.5.0 ``image.py``): a header of
``IMAGE_HEADER_FORMAT`` padded to ``header_size``, the body (``img_size`` bytes), the protected TLV area
(its size in the header) and the unprotected one. MCUboot hashes the header, the body and the protected
TLVs (the ``SHA256`` TLV) and signs that hash region (the ``ECDSA_SIG`` TLV, with the signing key's hash in
``KEYHASH``). ``cryptography`` primitives only; nothing here runs imgtool.
"""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

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

_VERSION = re.compile(r"(0|[1-9]\d*)(?:\.(0|[1-9]\d*)(?:\.(0|[1-9]\d*)(?:\+(0|[1-9]\d*))?)?)?")


class McubootError(FabGuardError):
    """An MCUboot image could not be built or read."""

    code = "mcuboot_image_invalid"
    status = 422


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


__all__ = [
    "IMAGE_F_ENCRYPTED_AES128",
    "IMAGE_F_ENCRYPTED_AES256",
    "IMAGE_MAGIC",
    "IMAGE_TLV_ENC_EC256",
    "IMAGE_TLV_SHA256",
    "McubootError",
    "McubootImage",
    "check_version",
    "parse_mcuboot_image",
    "verify_mcuboot_signature",
]
