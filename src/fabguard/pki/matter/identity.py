"""Who a Matter attestation certificate speaks for: Vendor and Product IDs and how a subject carries them."""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.x509.oid import NameOID

from fabguard.domain.errors import FabGuardError

OID_VENDOR_ID = x509.ObjectIdentifier("1.3.6.1.4.1.37244.2.1")
OID_PRODUCT_ID = x509.ObjectIdentifier("1.3.6.1.4.1.37244.2.2")

# 0x0000 is the Matter standard's own scope, 0x0001-0xFFF0 are CSA-assigned manufacturer codes,
# 0xFFF1-0xFFF4 are the test vendors; nothing above 0xFFF4 can name a vendor.
_VID_MIN, _VID_MAX = 0x0001, 0xFFF4
_TEST_VIDS = range(0xFFF1, 0xFFF4 + 1)
# Product ID 0x0000 is reserved (anonymised PID, "all products" in OTA files); it is never assigned.
_PID_MIN, _PID_MAX = 0x0001, 0xFFFF
_HEX4 = re.compile(r"[0-9A-F]{4}")
_UTF8_STRING_TAG = 0x0C
_MAX_COMMON_NAME = 64  # X.520 ub-common-name, also connectedhomeip's kMax_CommonNameAttr_Length


class AttestationProfileError(FabGuardError, ValueError):
    """A value or a certificate breaks a rule of the Matter attestation profile; ``rule`` names which."""

    code = "matter_attestation_invalid"
    status = 422

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


class AttestationRole(enum.StrEnum):
    PAA = "PAA"
    PAI = "PAI"
    DAC = "DAC"


@dataclass(frozen=True, slots=True)
class VendorId:
    """A Matter Vendor ID: 0x0001-0xFFF0 assigned by the CSA, 0xFFF1-0xFFF4 for testing."""

    value: int

    def __post_init__(self) -> None:
        if isinstance(self.value, bool) or not isinstance(self.value, int) or not _VID_MIN <= self.value <= _VID_MAX:
            raise AttestationProfileError(
                "vendor-id-range",
                f"vendor ID {self.value!r} is not in 0x0001-0xFFF4 (0x0000 is reserved for the Matter standard; "
                "0xFFF1-0xFFF4 are the test vendors; higher values are not vendor IDs)",
            )

    @property
    def is_test(self) -> bool:
        return self.value in _TEST_VIDS

    def __str__(self) -> str:
        return f"{self.value:04X}"


@dataclass(frozen=True, slots=True)
class ProductId:
    """A Matter Product ID: 0x0001-0xFFFF, chosen by the vendor."""

    value: int

    def __post_init__(self) -> None:
        if isinstance(self.value, bool) or not isinstance(self.value, int) or not _PID_MIN <= self.value <= _PID_MAX:
            raise AttestationProfileError(
                "product-id-range", f"product ID {self.value!r} is not in 0x0001-0xFFFF (0x0000 is never assigned)"
            )

    def __str__(self) -> str:
        return f"{self.value:04X}"


def attestation_subject(common_name: str, vid: VendorId | None, pid: ProductId | None) -> x509.Name:
    """CN, then the Matter VID and PID attributes: 4 upper-case hex digits each, UTF8String (6.2.2.2)."""
    if not isinstance(common_name, str) or not 1 <= len(common_name) <= _MAX_COMMON_NAME:
        raise AttestationProfileError(
            "common-name", f"the common name must be 1-{_MAX_COMMON_NAME} characters, got {common_name!r}"
        )
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    # cryptography encodes attribute types it has no registered string type for as UTF8String.
    if vid is not None:
        attributes.append(x509.NameAttribute(OID_VENDOR_ID, str(vid)))
    if pid is not None:
        attributes.append(x509.NameAttribute(OID_PRODUCT_ID, str(pid)))
    return x509.Name(attributes)


def _der_items(data: bytes) -> Iterator[tuple[int, bytes]]:
    """Split concatenated DER TLVs (single-byte tags, definite lengths) into (tag, contents)."""
    i = 0
    while i < len(data):
        if i + 2 > len(data):
            raise ValueError("truncated DER")
        tag, length = data[i], data[i + 1]
        i += 2
        if length & 0x80:
            count = length & 0x7F
            length = int.from_bytes(data[i : i + count], "big")
            i += count
        if i + length > len(data):
            raise ValueError("truncated DER")
        yield tag, data[i : i + length]
        i += length


def _oid_contents(oid: x509.ObjectIdentifier) -> bytes:
    arcs = [int(a) for a in oid.dotted_string.split(".")]
    out = bytearray()
    for arc in [40 * arcs[0] + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out.extend(reversed(chunk))
    return bytes(out)


def _string_tags(name: x509.Name, oid: x509.ObjectIdentifier) -> list[int]:
    """The ASN.1 string tag of each value of ``oid`` in ``name`` (cryptography hides it behind a private field)."""
    wanted = _oid_contents(oid)
    ((_, rdns),) = _der_items(name.public_bytes())
    tags = []
    for _, rdn in _der_items(rdns):
        for _, type_and_value in _der_items(rdn):
            (_, attr_type), (value_tag, _) = _der_items(type_and_value)
            if attr_type == wanted:
                tags.append(value_tag)
    return tags


def _one_id(name: x509.Name, oid: x509.ObjectIdentifier, what: str) -> int | None:
    values = name.get_attributes_for_oid(oid)
    if not values:
        return None
    if len(values) > 1:
        raise AttestationProfileError("vid-pid-encoding", f"the subject carries {len(values)} {what} attributes")
    text = values[0].value
    if any(tag != _UTF8_STRING_TAG for tag in _string_tags(name, oid)):
        raise AttestationProfileError("vid-pid-encoding", f"the subject's {what} is not a UTF8String")
    if not isinstance(text, str) or not _HEX4.fullmatch(text):
        raise AttestationProfileError(
            "vid-pid-encoding", f"the subject's {what} {text!r} is not exactly 4 upper-case hex digits"
        )
    return int(text, 16)


def subject_ids(name: x509.Name) -> tuple[VendorId | None, ProductId | None]:
    """The Matter VID and PID a subject carries, each checked for the encoding 6.2.2.2 requires."""
    vid = _one_id(name, OID_VENDOR_ID, "vendor ID")
    pid = _one_id(name, OID_PRODUCT_ID, "product ID")
    return (None if vid is None else VendorId(vid)), (None if pid is None else ProductId(pid))


def utc(t: datetime) -> datetime:
    """Times are UTC; a naive datetime is taken to be UTC already."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
