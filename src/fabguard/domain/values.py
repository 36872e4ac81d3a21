"""Validated value objects: identifiers are checked once, at the edge, then trusted."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import ClassVar, Self

from fabguard.domain.errors import InvalidRequest, NotFound, Refusal

# X.509 serialNumber is a PrintableString: letters, digits and a few punctuation marks only. A serial is
# an identifier, never a path: no '/' (issue 23; serials stored before keep working, see docs/ledger.md).
_SERIAL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.:-]{0,63}")
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
    """A unit serial number: 1-64 characters, letters, digits and ``. : -``, starting alphanumeric."""

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
        "serial_invalid",
        f"serial {describe_value(value)} is not 1-64 characters of letters, digits and . : - starting with a "
        "letter or digit (no '/', spaces or other characters)",
    )


@dataclass(frozen=True, slots=True)
class _Slug:
    """An identifier a person chooses, checked by :func:`slug`: 1-63 lower-case letters, digits or '-'."""

    value: str
    what: ClassVar[str]  # names the field in the message and the code: "product id" -> invalid_product_id
    noun: ClassVar[str]  # what a lookup that finds none says there is none of: "no product 'x'"
    not_found: ClassVar[str]  # and its code

    def __post_init__(self) -> None:
        slug(self.value, self.what)

    @classmethod
    def named(cls, value: str) -> Self:
        """The id a request names to look up: one that breaks the rule names nothing, so it is not found
        (with the message and code the lookup itself sends)."""
        try:
            return cls(value)
        except InvalidRequest:
            raise NotFound(f"no {cls.noun} {value!r}", code=cls.not_found) from None

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class OrderId(_Slug):
    """A production order's id: 1-63 lower-case letters, digits or '-', starting with a letter or digit."""

    what: ClassVar[str] = "order id"
    noun: ClassVar[str] = "order"
    not_found: ClassVar[str] = "order_not_found"


@dataclass(frozen=True, slots=True)
class ProductId(_Slug):
    """A product's id (a slug)."""

    what: ClassVar[str] = "product id"
    noun: ClassVar[str] = "product"
    not_found: ClassVar[str] = "product_not_found"


@dataclass(frozen=True, slots=True)
class SiteId(_Slug):
    """A contract manufacturer's site id (a slug)."""

    what: ClassVar[str] = "site id"
    noun: ClassVar[str] = "site"
    not_found: ClassVar[str] = "site_not_found"


@dataclass(frozen=True, slots=True)
class FixtureId(_Slug):
    """A fixture's (test station's) id (a slug)."""

    what: ClassVar[str] = "fixture id"
    noun: ClassVar[str] = "fixture"
    not_found: ClassVar[str] = "fixture_not_found"


@dataclass(frozen=True, slots=True)
class CaName(_Slug):
    """The name of an issuing CA or a Matter PAI that a person chooses (a slug)."""

    what: ClassVar[str] = "CA name"
    noun: ClassVar[str] = "CA"
    not_found: ClassVar[str] = "ca_not_found"


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

    @classmethod
    def parse(cls, value: str) -> OrderState:
        """The state a request asks for; anything else is ``invalid_state``."""
        try:
            return cls(value)
        except ValueError:
            raise InvalidRequest(
                f"unknown order state {value!r}; one of {', '.join(x.value for x in cls)}", code="invalid_state"
            ) from None


class TestOutcome(enum.StrEnum):
    """OpenHTF's test outcomes; only PASS opens the door to a certificate."""

    __test__ = False  # not a pytest class

    PASS = "PASS"
    FAIL = "FAIL"
    ERROR = "ERROR"
    TIMEOUT = "TIMEOUT"
    ABORTED = "ABORTED"


class Role(enum.StrEnum):
    """Who holds an API token and what it may do (docs/roles.md has the route table)."""

    ADMIN = "admin"
    ENGINEER = "engineer"
    APPROVER = "approver"
    AUDITOR = "auditor"
    OPERATOR = "operator"  # a CM site's reader: its token names the one site it sees
    FIELD = "field"  # a support desk or device cloud: asks field challenges and checks devices, nothing else
    METRICS = "metrics"  # a Prometheus server: scrapes /metrics, nothing else; its token may live for years
