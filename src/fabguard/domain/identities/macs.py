"""MAC addresses from the OEM's IEEE assignment: MA-L, MA-M or MA-S, N consecutive addresses per unit.

An IEEE Registration Authority assignment fixes the first 24 (MA-L), 28 (MA-M) or 36 (MA-S) bits of
a 48-bit EUI-48; the OEM numbers the rest. A product's block is the whole assignment or a part of it
(``first`` and ``count``, in addresses), so one assignment can serve several products without overlap.
Unit n (from 0) gets the ``per_unit`` addresses starting at ``first + n * per_unit``.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Self

from fabguard.domain.errors import Conflict, InvalidRequest
from fabguard.domain.values import describe_value

_HEX_GROUPS = re.compile(r"[0-9A-Fa-f]+(?:[-:][0-9A-Fa-f]+)*")
_MAC_RE = re.compile(r"[0-9A-Fa-f]{2}(?:([-:])[0-9A-Fa-f]{2})(?:\1[0-9A-Fa-f]{2}){4}|[0-9A-Fa-f]{12}")
MAX_PER_UNIT = 64
_MULTICAST = 0x01 << 40  # the I/G bit of the first octet
_LOCAL = 0x02 << 40  # the U/L bit: set in locally administered addresses, never in an IEEE assignment


def _mac_block_invalid(message: str) -> InvalidRequest:
    return InvalidRequest(message, code="invalid_mac_block")


class IeeeAssignment(enum.StrEnum):
    """The IEEE RA's block sizes: a 24-, 28- or 36-bit prefix (2**24, 2**20 or 2**12 addresses)."""

    MA_L = "MA-L"
    MA_M = "MA-M"
    MA_S = "MA-S"

    @property
    def prefix_bits(self) -> int:
        return {"MA-L": 24, "MA-M": 28, "MA-S": 36}[self.value]

    @property
    def size(self) -> int:
        return 1 << (48 - self.prefix_bits)


@dataclass(frozen=True, slots=True, order=True)
class MacAddress:
    """An EUI-48, written ``00:1B:63:84:45:E6``."""

    value: int

    def __post_init__(self) -> None:
        if isinstance(self.value, bool) or not isinstance(self.value, int) or not 0 <= self.value < 1 << 48:
            raise InvalidRequest(f"MAC address {describe_value(self.value)} is not 48 bits", code="invalid_format")

    @classmethod
    def parse(cls, text: str) -> Self:
        """``00:1B:63:84:45:E6``, ``00-1b-63-84-45-e6`` or ``001B638445E6``."""
        if not isinstance(text, str) or not _MAC_RE.fullmatch(text):
            raise InvalidRequest(
                f"MAC address {describe_value(text)} is not six hex octets (00:1B:63:84:45:E6)", code="invalid_format"
            )
        return cls(int(re.sub("[-:]", "", text), 16))

    def __str__(self) -> str:
        return ":".join(f"{b:02X}" for b in self.value.to_bytes(6, "big"))


@dataclass(frozen=True, slots=True)
class MacBlock:
    """A product's MAC addresses: part or all of one IEEE assignment, ``per_unit`` addresses a unit."""

    assignment: IeeeAssignment
    prefix: int  # the assignment's prefix_bits-bit value, as the IEEE registry lists it
    per_unit: int = 1
    first: int = 0  # offset of the block's first address within the assignment
    count: int | None = None  # addresses in the block; None: to the end of the assignment

    def __post_init__(self) -> None:
        if not isinstance(self.assignment, IeeeAssignment):
            raise _mac_block_invalid(f"unknown IEEE assignment {describe_value(self.assignment)} (MA-L, MA-M, MA-S)")
        bits = self.assignment.prefix_bits
        if isinstance(self.prefix, bool) or not isinstance(self.prefix, int) or not 0 <= self.prefix < 1 << bits:
            raise _mac_block_invalid(f"an {self.assignment} prefix is {bits} bits, not {describe_value(self.prefix)}")
        base = self.prefix << (48 - bits)
        if base & _MULTICAST or base & _LOCAL:
            raise _mac_block_invalid(
                f"prefix {self.prefix_text} has the multicast or the locally-administered bit set: "
                "it is not an IEEE assignment"
            )
        for name, value, low in (("per_unit", self.per_unit, 1), ("first", self.first, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise _mac_block_invalid(f"{name} {describe_value(value)} is not a whole number >= {low}")
        if self.per_unit > MAX_PER_UNIT:
            raise _mac_block_invalid(f"per_unit {self.per_unit} is more than {MAX_PER_UNIT} addresses a unit")
        size = self.assignment.size
        if self.first >= size:
            raise _mac_block_invalid(f"first {self.first} is past the {size} addresses of an {self.assignment}")
        if self.count is not None and (
            isinstance(self.count, bool)
            or not isinstance(self.count, int)
            or not self.per_unit <= self.count <= size - self.first
        ):
            raise _mac_block_invalid(
                f"count {describe_value(self.count)} is not {self.per_unit}-{size - self.first} addresses "
                f"(from offset {self.first} of an {self.assignment})"
            )

    @classmethod
    def parse(cls, prefix: str, *, per_unit: int = 1, first: int = 0, count: int | None = None) -> Self:
        """From the registry's notation: 6 hex digits for MA-L (``00-1B-63``), 7 for MA-M (``70-B3-D5-1``),
        9 for MA-S (``70-B3-D5-7A-9``); ``-`` or ``:`` between groups."""
        if not isinstance(prefix, str) or not _HEX_GROUPS.fullmatch(prefix):
            raise _mac_block_invalid(f"MAC prefix {describe_value(prefix)} is not hex digits in groups")
        digits = re.sub("[-:]", "", prefix)
        kinds = {6: IeeeAssignment.MA_L, 7: IeeeAssignment.MA_M, 9: IeeeAssignment.MA_S}
        if len(digits) not in kinds:
            raise _mac_block_invalid(
                f"MAC prefix {describe_value(prefix)} has {len(digits)} hex digits: MA-L has 6, MA-M 7, MA-S 9"
            )
        return cls(kinds[len(digits)], int(digits, 16), per_unit=per_unit, first=first, count=count)

    @property
    def size(self) -> int:
        """Addresses in the block."""
        return self.assignment.size - self.first if self.count is None else self.count

    @property
    def capacity(self) -> int:
        """Units the block serves."""
        return self.size // self.per_unit

    @property
    def first_address(self) -> MacAddress:
        return MacAddress((self.prefix << (48 - self.assignment.prefix_bits)) + self.first)

    def addresses(self, n: int) -> tuple[MacAddress, ...]:
        """Unit n's ``per_unit`` consecutive addresses (n from 0); past the last unit is ``mac_block_exhausted``."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise InvalidRequest(f"unit index {describe_value(n)} is not a whole number >= 0", code="invalid_index")
        if n >= self.capacity:
            raise Conflict(
                f"MAC block {self} serves {self.capacity} units of {self.per_unit} addresses; unit {n} is past the end",
                code="mac_block_exhausted",
            )
        start = self.first_address.value + n * self.per_unit
        return tuple(MacAddress(start + i) for i in range(self.per_unit))

    @property
    def prefix_text(self) -> str:
        """The prefix in the registry's notation: ``00-1B-63``, ``70-B3-D5-1``."""
        digits = self.assignment.prefix_bits // 4
        text = f"{self.prefix:0{digits}X}"
        return "-".join(text[i : i + 2] for i in range(0, digits, 2))

    def __str__(self) -> str:
        return f"{self.assignment} {self.prefix_text} [{self.first}, +{self.size})"
