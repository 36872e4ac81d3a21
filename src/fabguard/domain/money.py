"""Money for royalty rates: a non-negative decimal amount with an ISO 4217 currency, never a float.

An amount is written as decimal text (``"0.42"``) wherever it travels (API bodies, ledger entries,
statements), so no binary rounding ever touches it; arithmetic is :class:`decimal.Decimal`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from fabguard.domain.errors import InvalidRequest

# At most 12 digits before the point and 6 after: a per-unit rate, not a national budget.
_AMOUNT_RE = re.compile(r"(0|[1-9][0-9]{0,11})(\.[0-9]{1,6})?")
_CURRENCY_RE = re.compile(r"[A-Z]{3}")


@dataclass(frozen=True, slots=True)
class Money:
    """An exact amount in one currency."""

    amount: Decimal
    currency: str

    @classmethod
    def parse(cls, amount: object, currency: object) -> Money:
        """From decimal text and a currency code; a float, an exponent or a negative is ``invalid_rate``."""
        if not isinstance(amount, str) or not _AMOUNT_RE.fullmatch(amount):
            raise InvalidRequest(
                f'a rate is decimal text like "0.42" (up to 12 digits, 6 decimals, not negative), not {amount!r}',
                code="invalid_rate",
            )
        if not isinstance(currency, str) or not _CURRENCY_RE.fullmatch(currency):
            raise InvalidRequest(
                f"a currency is an ISO 4217 code of three capital letters (EUR, USD), not {currency!r}",
                code="invalid_currency",
            )
        try:
            return cls(Decimal(amount), currency)
        except InvalidOperation:  # unreachable after the pattern, kept so a bad value never passes silently
            raise InvalidRequest(f"{amount!r} is not a decimal amount", code="invalid_rate") from None

    def text(self) -> str:
        """The amount as plain decimal text (no exponent), as it is stored and signed."""
        return format(self.amount, "f")

    def __str__(self) -> str:
        return f"{self.text()} {self.currency}"
