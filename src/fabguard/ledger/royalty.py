"""Royalty statements: units provisioned (and revoked, refused) per site, order and product in a period,
priced at the per-unit rate in force when each unit was provisioned, computed from ledger entries alone.

Pure, like reconciliation: an auditor recomputes a statement from an export. Rates are ledger entries
(``royalty.rate_set``): a product's rate, or an order's override of it, each with the time it takes
effect. A rate never reaches back: it applies from the later of its ``effective_from`` and the time it
was recorded, so a statement of a past period computed at any later checkpoint is the same. Royalties
are owed on units provisioned; a revoked unit is reported, not credited back.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

RATE_SET = "royalty.rate_set"


@dataclass(frozen=True)
class RoyaltyScope:
    site_id: str | None = None
    order_id: str | None = None
    product_id: str | None = None
    since: str | None = None  # RFC 3339 UTC as the entries write it, compared as text
    until: str | None = None

    def in_period(self, at: str) -> bool:
        return (self.since is None or at >= self.since) and (self.until is None or at < self.until)

    def takes(self, site_id: str | None, order_id: str | None, product_id: str | None) -> bool:
        return (
            (self.site_id is None or site_id == self.site_id)
            and (self.order_id is None or order_id == self.order_id)
            and (self.product_id is None or product_id == self.product_id)
        )

    def describe(self) -> str:
        parts = [
            f"{what} {v}"
            for what, v in (("site", self.site_id), ("order", self.order_id), ("product", self.product_id))
            if v
        ]
        if self.since or self.until:
            parts.append(f"from {self.since or 'the start'} until {self.until or 'now'}")
        return ", ".join(parts) or "everything"


@dataclass(frozen=True)
class Rate:
    """One ``royalty.rate_set`` entry: it applies to units provisioned from ``effective``."""

    entry: int
    product_id: str
    order_id: str | None
    amount: Decimal
    currency: str
    effective: str  # the later of its effective_from and when it was recorded

    def to_dict(self) -> dict[str, Any]:
        return {
            "entry": self.entry,
            "product_id": self.product_id,
            "order_id": self.order_id,
            "amount": format(self.amount, "f"),
            "currency": self.currency,
            "effective": self.effective,
        }


@dataclass
class RoyaltyStatement:
    scope: RoyaltyScope
    tree_size: int = 0
    # (site, order, product, rate entry or None) -> serials with their ledger entry
    provisioned: dict[tuple[str, str, str, int | None], list[tuple[str, int]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    revoked: list[tuple[str, str, int]] = field(default_factory=list)  # serial, order, entry
    refused: list[tuple[str | None, str, str | None, int]] = field(default_factory=list)  # serial, code, order, entry
    rates: dict[int, Rate] = field(default_factory=dict)

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for (site, order, product, rate_entry), units in sorted(
            self.provisioned.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2], kv[0][3] or -1)
        ):
            rate = self.rates[rate_entry] if rate_entry is not None else None
            out.append(
                {
                    "site_id": site,
                    "order_id": order,
                    "product_id": product,
                    "units": len(units),
                    "rate": None if rate is None else _rate_ref(rate),
                    "amount": None if rate is None else format(rate.amount * len(units), "f"),
                    "currency": None if rate is None else rate.currency,
                }
            )
        return out

    def figures(self) -> dict[str, Any]:
        totals: dict[str, Decimal] = defaultdict(Decimal)
        unrated = 0
        for (_, _, _, rate_entry), units in self.provisioned.items():
            if rate_entry is None:
                unrated += len(units)
            else:
                rate = self.rates[rate_entry]
                totals[rate.currency] += rate.amount * len(units)
        return {
            "provisioned": sum(len(u) for u in self.provisioned.values()),
            "unrated": unrated,
            "revoked": len(self.revoked),
            "refused": dict(sorted(Counter(code for _, code, _, _ in self.refused).items())),
            "refused_total": len(self.refused),
            "totals": {c: format(v, "f") for c, v in sorted(totals.items())},
        }

    def to_dict(self) -> dict[str, Any]:
        used = sorted({k[3] for k in self.provisioned if k[3] is not None})
        return {
            "scope": {k: v for k, v in vars(self.scope).items() if v is not None},
            "tree_size": self.tree_size,
            "figures": self.figures(),
            "lines": self.lines(),
            "rates": [self.rates[i].to_dict() for i in used],
            "evidence": {
                "provisioned": sorted(
                    (
                        {"serial": s, "order_id": k[1], "entry": i, "rate_entry": k[3]}
                        for k, units in self.provisioned.items()
                        for s, i in units
                    ),
                    key=lambda row: int(row["entry"] or 0),
                ),
                "revoked": [{"serial": s, "order_id": o, "entry": i} for s, o, i in self.revoked],
                "refused": [{"serial": s, "code": c, "order_id": o, "entry": i} for s, c, o, i in self.refused],
            },
        }


def _rate_ref(rate: Rate) -> dict[str, Any]:
    return {
        "amount": format(rate.amount, "f"),
        "currency": rate.currency,
        "basis": "order" if rate.order_id else "product",
        "entry": rate.entry,
    }


def rate_in_force(rates: Iterable[Rate], product_id: str, order_id: str, at: str) -> Rate | None:
    """The order's own rate in force at ``at``, else the product's; the latest to take effect wins."""
    best: dict[bool, Rate] = {}
    for r in rates:
        if r.product_id != product_id or r.effective > at or (r.order_id is not None and r.order_id != order_id):
            continue
        own = r.order_id is not None
        held = best.get(own)
        if held is None or (r.effective, r.entry) > (held.effective, held.entry):
            best[own] = r
    return best.get(True) or best.get(False)


def rate_of_entry(e: dict[str, Any]) -> Rate:
    detail = e.get("detail") or {}
    at, effective_from = str(e["at"]), str(detail.get("effective_from") or e["at"])
    return Rate(
        entry=int(e["index"]),
        product_id=str(detail["product_id"]),
        order_id=e.get("order_id"),
        amount=Decimal(str(detail["amount"])),
        currency=str(detail["currency"]),
        effective=max(at, effective_from),
    )


def royalty_statement(entries: Iterable[dict[str, Any]], scope: RoyaltyScope) -> RoyaltyStatement:
    """One pass over entries in index order (an export's, or the server's up to a checkpoint)."""
    result = RoyaltyStatement(scope)
    orders: dict[str, tuple[str, str]] = {}  # order -> (product, site)
    rates: list[Rate] = []
    for e in entries:
        kind, detail, index = e["kind"], e.get("detail") or {}, int(e["index"])
        result.tree_size = max(result.tree_size, index + 1)
        if kind == "order.created":
            orders[e["order_id"]] = (str(detail.get("product_id", "")), str(detail.get("site_id", "")))
        elif kind == RATE_SET:
            set_rate = rate_of_entry(e)
            rates.append(set_rate)
            result.rates[set_rate.entry] = set_rate
        elif not scope.in_period(str(e["at"])):
            continue
        elif kind == "unit.provisioned":
            order = str(e["order_id"])
            product = str(detail.get("product_id") or orders.get(order, ("", ""))[0])
            site = str(detail.get("site_id", ""))
            if scope.takes(site, order, product):
                rate = rate_in_force(rates, product, order, str(e["at"]))
                key = (site, order, product, None if rate is None else rate.entry)
                result.provisioned[key].append((str(e["serial"]), index))
        elif kind == "unit.revoked":
            order = str(e.get("order_id"))
            of_order = orders.get(order, ("", ""))
            if scope.takes(of_order[1], order, str(detail.get("product_id") or of_order[0])):
                result.revoked.append((str(e["serial"]), order, index))
        elif kind == "unit.refused":
            order_id = e.get("order_id")
            known = orders.get(order_id) if order_id else None
            if scope.takes(detail.get("site_id"), order_id, known[0] if known else None):
                result.refused.append((e.get("serial"), str(e.get("code")), order_id, index))
    return result
