"""Royalty statements from ledger entries alone: the rate in force per unit, overrides, exact money, scope."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fabguard.domain.errors import InvalidRequest
from fabguard.domain.money import Money
from fabguard.ledger.royalty import RoyaltyScope, royalty_statement


class Ledger:
    """Entries as the server writes them (only the fields a statement reads)."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def add(self, kind: str, at: str, order_id: str | None = None, **fields: Any) -> int:
        index = len(self.entries)
        detail = fields.pop("detail", {})
        self.entries.append(
            {
                "index": index,
                "at": at,
                "kind": kind,
                "order_id": order_id,
                "serial": None,
                "code": None,
                **fields,
                "detail": detail,
            }
        )
        return index

    def order(self, order_id: str, product: str = "sensor", site: str = "cm-a") -> None:
        self.add(
            "order.created", "2027-01-01T00:00:00.000000Z", order_id, detail={"product_id": product, "site_id": site}
        )

    def rate(
        self, at: str, amount: str, *, product: str = "sensor", order: str | None = None, start: str | None = None
    ) -> int:
        detail = {"product_id": product, "amount": amount, "currency": "EUR", "effective_from": start or at}
        return self.add("royalty.rate_set", at, order, detail=detail)

    def unit(self, at: str, serial: str, order: str = "po-1", site: str = "cm-a", product: str = "sensor") -> int:
        return self.add("unit.provisioned", at, order, serial=serial, detail={"site_id": site, "product_id": product})


def t(day: int, hour: int = 0) -> str:
    return f"2027-01-{day:02d}T{hour:02d}:00:00.000000Z"


def test_each_unit_is_priced_at_the_rate_in_force_when_it_was_provisioned() -> None:
    ledger = Ledger()
    ledger.order("po-1")
    first = ledger.rate(t(1), "0.40")
    ledger.unit(t(2), "SN-1")
    ledger.unit(t(2, 1), "SN-2")
    later = ledger.rate(t(2, 2), "0.55", start=t(3))  # set on the 2nd, in force from the 3rd
    ledger.unit(t(2, 3), "SN-3")  # still the old rate
    ledger.unit(t(3, 1), "SN-4")
    result = royalty_statement(ledger.entries, RoyaltyScope(order_id="po-1")).to_dict()
    lines = {line["rate"]["entry"]: line for line in result["lines"]}
    assert lines[first]["units"] == 3 and lines[first]["amount"] == "1.20"
    assert lines[later]["units"] == 1 and lines[later]["amount"] == "0.55"
    assert result["figures"]["totals"] == {"EUR": "1.75"} and result["figures"]["unrated"] == 0
    assert {r["serial"]: r["rate_entry"] for r in result["evidence"]["provisioned"]} == {
        "SN-1": first,
        "SN-2": first,
        "SN-3": first,
        "SN-4": later,
    }


def test_an_order_override_beats_the_product_rate_and_only_for_its_order() -> None:
    ledger = Ledger()
    ledger.order("po-1")
    ledger.order("po-2")
    product = ledger.rate(t(1), "1.00")
    override = ledger.rate(t(1), "0.25", order="po-2")
    ledger.unit(t(2), "SN-1", order="po-1")
    ledger.unit(t(2), "SN-2", order="po-2")
    lines = royalty_statement(ledger.entries, RoyaltyScope()).to_dict()["lines"]
    assert [(ln["order_id"], ln["rate"]["entry"], ln["rate"]["basis"]) for ln in lines] == [
        ("po-1", product, "product"),
        ("po-2", override, "order"),
    ]


def test_a_rate_recorded_late_never_reaches_back_before_it_was_recorded() -> None:
    """An effective_from in the past (as an old or forged entry might say) counts from when it was written."""
    ledger = Ledger()
    ledger.order("po-1")
    ledger.unit(t(2), "SN-1")
    ledger.rate(t(3), "9.99", start=t(1))
    result = royalty_statement(ledger.entries, RoyaltyScope())
    assert result.figures()["unrated"] == 1 and result.figures()["totals"] == {}


def test_a_past_period_stays_the_same_whatever_is_recorded_after_it() -> None:
    ledger = Ledger()
    ledger.order("po-1")
    ledger.rate(t(1), "0.40")
    ledger.unit(t(2), "SN-1")
    period = RoyaltyScope(since=t(1), until=t(3))
    before = royalty_statement(list(ledger.entries), period).to_dict()
    ledger.rate(t(4), "0.90")
    ledger.rate(t(4), "0.10", order="po-1")
    ledger.unit(t(5), "SN-2")
    after = royalty_statement(ledger.entries, period).to_dict()
    assert after["lines"] == before["lines"] and after["figures"] == before["figures"]


def test_scope_by_site_product_and_period_and_revocations_and_refusals_are_reported() -> None:
    ledger = Ledger()
    ledger.order("po-1", site="cm-a")
    ledger.order("po-9", product="gateway", site="cm-b")
    ledger.rate(t(1), "2", product="gateway")
    ledger.unit(t(2), "SN-1", order="po-1")
    ledger.unit(t(2), "GW-1", order="po-9", site="cm-b", product="gateway")
    ledger.add("unit.revoked", t(3), "po-9", serial="GW-1", detail={"product_id": "gateway"})
    ledger.add("unit.refused", t(3), "po-9", serial="GW-2", code="quota_exhausted", detail={"site_id": "cm-b"})
    ledger.add("unit.refused", t(3), "po-1", serial="SN-2", code="test_missing", detail={"site_id": "cm-a"})
    at_b = royalty_statement(ledger.entries, RoyaltyScope(site_id="cm-b")).figures()
    assert at_b["provisioned"] == 1 and at_b["totals"] == {"EUR": "2"}
    assert at_b["revoked"] == 1 and at_b["refused"] == {"quota_exhausted": 1}
    sensor = royalty_statement(ledger.entries, RoyaltyScope(product_id="sensor")).figures()
    assert sensor["provisioned"] == 1 and sensor["unrated"] == 1 and sensor["refused"] == {"test_missing": 1}
    assert sensor["revoked"] == 0
    late = royalty_statement(ledger.entries, RoyaltyScope(since=t(3))).figures()
    assert late["provisioned"] == 0 and late["revoked"] == 1 and late["refused_total"] == 2


@given(
    st.lists(
        st.decimals(min_value=0, max_value=10**6, places=6, allow_nan=False, allow_infinity=False),
        min_size=1,
        max_size=8,
    ),
    st.integers(min_value=1, max_value=40),
)
def test_totals_are_exact_decimal_sums(amounts: list[Decimal], units: int) -> None:
    ledger = Ledger()
    ledger.order("po-1")
    for i, amount in enumerate(amounts):
        ledger.rate(t(1 + i), format(amount, "f"))
    for n in range(units):
        ledger.unit(t(1 + len(amounts), n % 24), f"SN-{n}")
    result = royalty_statement(ledger.entries, RoyaltyScope())
    assert Decimal(result.figures()["totals"]["EUR"]) == amounts[-1] * units


@pytest.mark.parametrize("amount", ["0.1e1", "-1", "1,50", " 1", "01", "1.1234567", "NaN", "Infinity", 0.42, 1])
def test_money_is_decimal_text_only(amount: object) -> None:
    with pytest.raises(InvalidRequest) as err:
        Money.parse(amount, "EUR")
    assert err.value.code == "invalid_rate"


@pytest.mark.parametrize("currency", ["eur", "EURO", "E1R", "", None])
def test_a_currency_is_three_capital_letters(currency: object) -> None:
    with pytest.raises(InvalidRequest) as err:
        Money.parse("1.00", currency)
    assert err.value.code == "invalid_currency"


def test_money_keeps_its_text_exactly() -> None:
    m = Money.parse("0.100000", "USD")
    assert m.text() == "0.100000" and m.amount == Decimal("0.1") and str(m) == "0.100000 USD"
