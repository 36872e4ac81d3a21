"""Validated value objects: identifiers are checked once, at the edge, then trusted."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from fabguard.domain.errors import InvalidRequest, Refusal

# X.509 serialNumber is a PrintableString: letters, digits and a few punctuation marks only.
_SERIAL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.:/-]{0,63}")
_SLUG_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


def describe_value(value: object) -> str:
    """A loose input value for an error message: its first 40 characters, quoted."""
    try:
        text = str(value)
    except ValueError:  # an integer past Python's 4300-digit limit for str(): a JSON field can carry one
        text = f"<an integer of about {value.bit_length() * 0.30103:.0f} digits>" if isinstance(value, int) else "<?>"
    shown = text if len(text) <= 40 else text[:40] + "..."
    return repr(shown)


@dataclass(frozen=True, slots=True)
class Serial:
    """A unit serial number: 1-64 characters, letters, digits and ``. : / -``, starting alphanumeric."""

    value: str

    def __post_init__(self) -> None:
        if not isinstance(self.value, str) or not _SERIAL_RE.fullmatch(self.value):
            raise _serial_invalid(self.value)

    @classmethod
    def parse(cls, value: object) -> Serial:
        """A serial from a loose value (a JSON field, a CSR attribute); anything else is ``serial_invalid``."""
        if not isinstance(value, str):
            raise _serial_invalid(value)
        return cls(value)

    def __str__(self) -> str:
        return self.value


def _serial_invalid(value: object) -> Refusal:
    return Refusal(
        "serial_invalid", f"serial {describe_value(value)} is not 1-64 characters of letters, digits and . : / -"
    )


@dataclass(frozen=True, slots=True)
class OrderId:
    """A production order's id: 1-63 lower-case letters, digits or '-', starting with a letter or digit."""

    value: str

    def __post_init__(self) -> None:
        slug(self.value, "order id")

    def __str__(self) -> str:
        return self.value


def recorded_order_id(value: object) -> str | None:
    """An order id as a refusal event records it: any string that fits the column (63), even one that
    names no order; else nothing."""
    return value if isinstance(value, str) and len(value) <= 63 else None


def recorded_serial(value: object) -> str | None:
    """A serial as a refusal event records it: any printable string of at most 64 characters, even one
    :class:`Serial` refuses; else nothing."""
    return value if isinstance(value, str) and len(value) <= 64 and value.isprintable() else None


def slug(value: str, what: str) -> str:
    """Check an identifier chosen by a person (product, site, fixture name)."""
    if not isinstance(value, str) or not _SLUG_RE.fullmatch(value):
        raise InvalidRequest(
            f"{what} {describe_value(value)} must be 1-63 lower-case letters, digits or '-', "
            "starting with a letter or digit",
            code=f"invalid_{what.replace(' ', '_')}",
        )
    return value


class KeyType(enum.StrEnum):
    """Device key algorithms a product profile may allow."""

    EC_P256 = "ec-p256"
    EC_P384 = "ec-p384"
    ED25519 = "ed25519"


def parse_key_types(values: list[str] | tuple[str, ...]) -> tuple[KeyType, ...]:
    out: list[KeyType] = []
    for v in values:
        try:
            out.append(KeyType(v))
        except ValueError:
            allowed = ", ".join(k.value for k in KeyType)
            raise InvalidRequest(f"unknown key type {v!r}; allowed: {allowed}") from None
    if not out:
        raise InvalidRequest("a product must allow at least one key type")
    return tuple(dict.fromkeys(out))


class OrderState(enum.StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    CLOSED = "closed"


class TestOutcome(enum.StrEnum):
    """OpenHTF's test outcomes; only PASS opens the door to a certificate."""

    __test__ = False  # not a pytest class

    PASS = "PASS"
    FAIL = "FAIL"
    ERROR = "ERROR"
    TIMEOUT = "TIMEOUT"
    ABORTED = "ABORTED"


class Role(enum.StrEnum):
    """Who holds an API token and what it may do."""

    ADMIN = "admin"
    ENGINEER = "engineer"
    APPROVER = "approver"
    AUDITOR = "auditor"
