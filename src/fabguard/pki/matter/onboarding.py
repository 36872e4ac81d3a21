"""Matter onboarding data per unit: the setup passcode, the discriminator, the QR code and the manual code.

Matter Core Specification 5.1: the passcode (5.1.1.6, with the invalid passcodes of 5.1.7.1), the
12-bit discriminator (5.1.1.5), the onboarding payload's packed bits (5.1.3.1, Table 39) in base38
(5.1.3.1.1) behind ``MT:``, and the 11- or 21-digit manual pairing code with its Verhoeff check digit
(5.1.4.1). The VID and PID are in the manual code when the commissioning flow is not the standard one,
as connectedhomeip's generator does. esp-matter-mfg-tool gives the same codes (tests/pki/test_matter_oracle.py).
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass
from itertools import pairwise
from typing import Self

from fabguard.domain.errors import InvalidRequest
from fabguard.domain.identities.checks import verhoeff
from fabguard.domain.values import describe_value
from fabguard.pki.matter.identity import ProductId, VendorId

# 5.1.7.1: trivially guessable passcodes a device never uses.
INVALID_PASSCODES = frozenset(
    {0, 11111111, 22222222, 33333333, 44444444, 55555555, 66666666, 77777777, 88888888, 99999999, 12345678, 87654321}
)
PASSCODE_MIN, PASSCODE_MAX = 0x0000001, 0x5F5E0FE  # 1 .. 99999998
DISCRIMINATOR_BITS = 12
BASE38_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-."
QR_PREFIX = "MT:"
_BASE38_CHARS = {1: 2, 2: 4, 3: 5}  # characters per chunk of 1, 2 or 3 bytes


def _onboarding_invalid(message: str) -> InvalidRequest:
    return InvalidRequest(message, code="invalid_matter_onboarding")


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class SetupPasscode:
    """A setup passcode: 1-99999998 and none of the specification's invalid passcodes."""

    value: int

    def __post_init__(self) -> None:
        if not _whole(self.value) or not PASSCODE_MIN <= self.value <= PASSCODE_MAX:
            raise InvalidRequest(
                f"setup passcode {describe_value(self.value)} is not 1-99999998", code="invalid_setup_passcode"
            )
        if self.value in INVALID_PASSCODES:
            raise InvalidRequest(
                f"setup passcode {self.value:08d} is one the Matter specification forbids (5.1.7.1)",
                code="invalid_setup_passcode",
            )

    @classmethod
    def random(cls) -> Self:
        """A passcode from the operating system's CSPRNG, uniform over the valid ones."""
        while True:
            value = PASSCODE_MIN + secrets.randbelow(PASSCODE_MAX - PASSCODE_MIN + 1)
            if value not in INVALID_PASSCODES:
                return cls(value)


@dataclass(frozen=True, slots=True)
class Discriminator:
    """The 12-bit discriminator a commissionable device advertises; its upper 4 bits are the short one."""

    value: int

    def __post_init__(self) -> None:
        if not _whole(self.value) or not 0 <= self.value < 1 << DISCRIMINATOR_BITS:
            raise _onboarding_invalid(f"discriminator {describe_value(self.value)} is not 0-4095 (12 bits)")

    @classmethod
    def random(cls) -> Self:
        return cls(secrets.randbelow(1 << DISCRIMINATOR_BITS))

    @property
    def short(self) -> int:
        return self.value >> 8


class CommissioningFlow(enum.IntEnum):
    STANDARD = 0
    USER_INTENT = 1
    CUSTOM = 2


class DiscoveryCapability(enum.IntFlag):
    """How a commissioner finds the device (bit 0 and bits 6-7 are reserved)."""

    BLE = 0x02
    ON_NETWORK = 0x04
    WIFI_PAF = 0x08
    NFC = 0x10
    THREAD = 0x20


_DISCOVERY_MASK = 0x3E


def base38_encode(data: bytes) -> str:
    """5.1.3.1.1: each 3-byte chunk (little-endian) as 5 base-38 digits, least significant first; a last
    chunk of 2 bytes as 4 digits, of 1 byte as 2."""
    out = []
    for i in range(0, len(data), 3):
        chunk = data[i : i + 3]
        value = int.from_bytes(chunk, "little")
        for _ in range(_BASE38_CHARS[len(chunk)]):
            value, digit = divmod(value, len(BASE38_ALPHABET))
            out.append(BASE38_ALPHABET[digit])
    return "".join(out)


@dataclass(frozen=True, slots=True)
class OnboardingPayload:
    """What a unit's QR code and manual pairing code carry (no optional TLV data)."""

    vendor_id: VendorId
    product_id: ProductId
    discriminator: Discriminator
    passcode: SetupPasscode
    flow: CommissioningFlow = CommissioningFlow.STANDARD
    discovery: DiscoveryCapability = DiscoveryCapability.BLE

    def __post_init__(self) -> None:
        if not isinstance(self.flow, CommissioningFlow):
            raise _onboarding_invalid(f"commissioning flow {describe_value(self.flow)} is not 0, 1 or 2")
        caps = int(self.discovery) if isinstance(self.discovery, DiscoveryCapability) else 0
        if caps == 0 or caps & ~_DISCOVERY_MASK:
            raise _onboarding_invalid(
                f"discovery capabilities {describe_value(self.discovery)} are not a non-empty sum of "
                "2 (BLE), 4 (on-network), 8 (Wi-Fi PAF), 16 (NFC), 32 (Thread)"
            )

    def packed(self) -> bytes:
        """Table 39's 88 bits, the first field in the least significant bits: version (3, 0), VID (16),
        PID (16), flow (2), discovery (8), discriminator (12), passcode (27), padding (4, 0)."""
        bits = 0
        shift = 0
        for value, width in (
            (0, 3),
            (self.vendor_id.value, 16),
            (self.product_id.value, 16),
            (int(self.flow), 2),
            (int(self.discovery), 8),
            (self.discriminator.value, DISCRIMINATOR_BITS),
            (self.passcode.value, 27),
            (0, 4),
        ):
            bits |= value << shift
            shift += width
        return bits.to_bytes(shift // 8, "little")

    def qr_code(self) -> str:
        """The QR code's text: ``MT:`` and the packed payload in base38."""
        return QR_PREFIX + base38_encode(self.packed())

    def manual_code(self) -> str:
        """The manual pairing code's digits: 11, or 21 with the VID and PID for a non-standard flow."""
        short = self.discriminator.short
        passcode = self.passcode.value
        long_code = self.flow != CommissioningFlow.STANDARD
        digits = f"{(int(long_code) << 2) | (short >> 2)}"
        digits += f"{((short & 0x3) << 14) | (passcode & 0x3FFF):05d}"
        digits += f"{passcode >> 14:04d}"
        if long_code:
            digits += f"{self.vendor_id.value:05d}{self.product_id.value:05d}"
        return digits + verhoeff(digits)

    def manual_code_grouped(self) -> str:
        """The manual code as printed: ``3497-011-2332``; a 21-digit code goes on as ``-DDDD-DDD-DDD``."""
        code = self.manual_code()
        cuts = (0, 4, 7, 11, 15, 18, 21)[: 4 if len(code) == 11 else 7]
        return "-".join(code[a:b] for a, b in pairwise(cuts))
