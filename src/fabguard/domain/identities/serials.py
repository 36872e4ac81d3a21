"""Serial formats the OEM sets per product: a prefix, a zero-padded counter and a check character.

The n-th serial of a format is ``prefix + counter + check`` with the counter ``n`` written in exactly
``width`` decimal digits. The check character is computed over the prefix's and counter's letters and
digits, upper-cased, separators (``-``, ``.``, ``:``) skipped, by the format's algorithm (see
docs/identities.md). Serial characters are letters, digits, ``-``, ``.`` and ``:``: never ``/``, which
a serial printed on a label or carried in a URL path would split.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass

from fabguard.domain.errors import Conflict, InvalidRequest
from fabguard.domain.identities.checks import iso7064_mod_37_36, luhn_mod_36
from fabguard.domain.values import Serial, describe_value

_PREFIX_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.:-]*")
MAX_PREFIX = 32
MAX_WIDTH = 18  # 10**18 serials: more than any product line, and the counter fits a signed 64-bit column


class CheckAlgorithm(enum.StrEnum):
    """How a serial's last character is computed (both over ``0-9A-Z``, so the check is a letter or digit)."""

    ISO7064_MOD_37_36 = "iso7064-mod-37-36"
    LUHN_MOD_36 = "luhn-mod-36"

    def check_character(self, body: str) -> str:
        return _ALGORITHMS[self](body)


_ALGORITHMS: dict[CheckAlgorithm, Callable[[str], str]] = {
    CheckAlgorithm.ISO7064_MOD_37_36: iso7064_mod_37_36,
    CheckAlgorithm.LUHN_MOD_36: luhn_mod_36,
}


def _format_invalid(message: str) -> InvalidRequest:
    return InvalidRequest(message, code="invalid_serial_format")


def _checked_body(text: str) -> str:
    """The characters the check character covers: letters and digits, upper-cased."""
    return "".join(c for c in text.upper() if c.isascii() and c.isalnum())


@dataclass(frozen=True, slots=True)
class SerialFormat:
    """``prefix`` (0-32 letters, digits, ``- . :``, starting with a letter or digit), a counter of
    ``width`` digits (1-18) and one check character computed by ``check``."""

    prefix: str
    width: int
    check: CheckAlgorithm = CheckAlgorithm.ISO7064_MOD_37_36

    def __post_init__(self) -> None:
        if not isinstance(self.prefix, str) or len(self.prefix) > MAX_PREFIX:
            raise _format_invalid(f"serial prefix {describe_value(self.prefix)} is not 0-{MAX_PREFIX} characters")
        if self.prefix and not _PREFIX_RE.fullmatch(self.prefix):
            raise _format_invalid(
                f"serial prefix {describe_value(self.prefix)} must start with a letter or digit and hold only "
                "letters, digits, '-', '.' and ':' (never '/')"
            )
        if isinstance(self.width, bool) or not isinstance(self.width, int) or not 1 <= self.width <= MAX_WIDTH:
            raise _format_invalid(f"serial counter width {describe_value(self.width)} is not 1-{MAX_WIDTH} digits")
        if not isinstance(self.check, CheckAlgorithm):
            raise _format_invalid(f"unknown check algorithm {describe_value(self.check)}")

    @property
    def capacity(self) -> int:
        """How many serials the format has: counters 0 to 10**width - 1."""
        capacity: int = 10**self.width
        return capacity

    @property
    def length(self) -> int:
        return len(self.prefix) + self.width + 1

    def serial(self, n: int) -> Serial:
        """The n-th serial (n counts from 0); past the last counter is ``serial_range_exhausted``."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise InvalidRequest(f"serial index {describe_value(n)} is not a whole number >= 0", code="invalid_index")
        if n >= self.capacity:
            raise Conflict(
                f"serial format {self} has {self.capacity} serials; index {n} is past the last one",
                code="serial_range_exhausted",
            )
        body = f"{self.prefix}{n:0{self.width}d}"
        return Serial(body + self.check.check_character(_checked_body(body)))

    def counter_of(self, serial: Serial | str) -> int:
        """The counter of a serial of this format; any other serial, or a wrong check character, is
        ``serial_not_in_format``."""
        text = str(serial)
        if len(text) != self.length or not text.startswith(self.prefix):
            raise self._not_in_format(text, f"it is not {self.prefix!r} and {self.width} digits and a check character")
        digits, check = text[len(self.prefix) : -1], text[-1]
        if not (digits.isascii() and digits.isdigit()):
            raise self._not_in_format(text, f"{digits!r} is not {self.width} decimal digits")
        expected = self.check.check_character(_checked_body(text[:-1]))
        if check != expected:
            raise self._not_in_format(text, f"its check character is {check!r}, {self.check} gives {expected!r}")
        return int(digits)

    def _not_in_format(self, text: str, why: str) -> InvalidRequest:
        return InvalidRequest(
            f"serial {describe_value(text)} is not of the format {self}: {why}", code="serial_not_in_format"
        )

    def __str__(self) -> str:
        return f"{self.prefix!r} + {self.width} digits + {self.check} check"
