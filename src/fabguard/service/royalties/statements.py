"""Royalty rates (set per product, overridden per order, from a time on) and signed royalty statements.

A rate is a ledger entry (``royalty.rate_set``) written with its row in one transaction; it may take
effect now or later, never earlier, so a statement of a past period stays what it was. A statement is
computed at a signed checkpoint from the ledger entries it covers (``fabguard.ledger.royalty``): the
newest stored one for the API's GET, which writes nothing, or one signed first by the command line; it
is signed with the ledger key like a reconciliation report: ``fabguard audit verify-report`` checks it.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from fabguard.domain.errors import InvalidRequest, NotFound
from fabguard.domain.money import Money
from fabguard.domain.values import OrderId, ProductId, SiteId
from fabguard.ledger.entry import canonical_json, decode_entry, format_time
from fabguard.ledger.royalty import RATE_SET, RoyaltyScope, RoyaltyStatement, royalty_statement
from fabguard.service.core.instance import Instance
from fabguard.service.ledger import merkle_log
from fabguard.service.ledger.reports import document_checkpoint, signed_head
from fabguard.store.eventlog import append_event
from fabguard.store.models import Event, Order, Product, Site
from fabguard.store.royalty_models import RoyaltyRate

TITLE = "FabGuard royalty statement"


@dataclass(frozen=True)
class RateView:
    id: int
    product_id: str
    order_id: str | None
    amount: str
    currency: str
    effective_from: datetime
    set_at: datetime
    set_by: str
    ledger_entry: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "product_id": self.product_id,
            "order_id": self.order_id,
            "amount": self.amount,
            "currency": self.currency,
            "effective_from": self.effective_from.isoformat(),
            "set_at": self.set_at.isoformat(),
            "set_by": self.set_by,
            "ledger_entry": self.ledger_entry,
        }


def _view(r: RoyaltyRate) -> RateView:
    return RateView(
        r.id, r.product_id, r.order_id, r.amount, r.currency, r.effective_from, r.set_at, r.set_by, r.event_seq - 1
    )


def set_rate(
    inst: Instance,
    *,
    rate: Money,
    actor: str,
    product_id: ProductId | None = None,
    order_id: OrderId | None = None,
    effective_from: datetime | None = None,
) -> RateView:
    """A product's per-unit rate (``product_id``), or one order's override of it (``order_id``)."""
    if (product_id is None) == (order_id is None):
        raise InvalidRequest("a rate is set for a product or for an order, not both", code="invalid_request")
    now = inst.clock()
    if effective_from is not None and effective_from.tzinfo is None:
        raise InvalidRequest("effective_from needs a time zone", code="invalid_time")
    start = effective_from or now
    if start < now:
        raise InvalidRequest(
            f"a rate takes effect now or later, not from {format_time(start)} (now is {format_time(now)}): "
            "a past period's statement must stay the same",
            code="rate_retroactive",
        )
    with inst.db.transaction() as s:
        if order_id is not None:
            order = s.get(Order, order_id.value)
            if order is None:
                raise NotFound(f"no order {order_id.value!r}", code="order_not_found")
            product = order.product_id
        else:
            assert product_id is not None
            if s.get(Product, product_id.value) is None:
                raise NotFound(f"no product {product_id.value!r}", code="product_not_found")
            product = product_id.value
        oid = order_id.value if order_id else None
        seq = append_event(
            s,
            RATE_SET,
            at=now,
            actor=actor,
            order_id=oid,
            detail={
                "product_id": product,
                "amount": rate.text(),
                "currency": rate.currency,
                "effective_from": format_time(start),
            },
        )
        row = RoyaltyRate(
            product_id=product,
            order_id=oid,
            amount=rate.text(),
            currency=rate.currency,
            effective_from=start,
            set_at=now,
            set_by=actor,
            event_seq=seq,
        )
        s.add(row)
        s.flush()
        return _view(row)


def list_rates(inst: Instance, *, product_id: str | None = None, order_id: str | None = None) -> list[RateView]:
    q = select(RoyaltyRate)
    if product_id:
        q = q.where(RoyaltyRate.product_id == product_id)
    if order_id:
        q = q.where(RoyaltyRate.order_id == order_id)
    with inst.db.read() as s:
        return [_view(r) for r in s.execute(q.order_by(RoyaltyRate.event_seq)).scalars()]


@dataclass(frozen=True)
class Statement:
    body: dict[str, Any]  # the signed document
    signature: str  # base64 Ed25519 over canonical_json(body), by the ledger key
    computed: RoyaltyStatement

    def to_dict(self) -> dict[str, Any]:
        # The same envelope as a reconciliation report, so one verifier (audit verify-report) checks both.
        return {"report": self.body, "signature": self.signature, "signed_by": self.body["verifier_key"]}


def _scope(
    site_id: SiteId | None,
    order_id: OrderId | None,
    product_id: ProductId | None,
    since: datetime | None,
    until: datetime | None,
) -> RoyaltyScope:
    for t in (since, until):
        if t is not None and t.tzinfo is None:
            raise InvalidRequest("statement times need a time zone", code="invalid_time")
    if since is not None and until is not None and since >= until:
        raise InvalidRequest("the period's start must come before its end", code="invalid_window")
    return RoyaltyScope(
        site_id=site_id.value if site_id else None,
        order_id=order_id.value if order_id else None,
        product_id=product_id.value if product_id else None,
        since=format_time(since) if since else None,
        until=format_time(until) if until else None,
    )


def _entries(inst: Instance, size: int) -> Iterator[dict[str, Any]]:
    with inst.db.read() as s:
        last = 0
        while last < size:
            rows = s.execute(
                select(Event.seq, Event.entry)
                .where(Event.seq > last, Event.seq <= size)
                .order_by(Event.seq)
                .limit(5000)
            ).all()
            for seq, entry in rows:
                last = seq
                yield decode_entry(bytes(entry))


def statement(
    inst: Instance,
    *,
    site_id: SiteId | None = None,
    order_id: OrderId | None = None,
    product_id: ProductId | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    sign_checkpoint: bool = False,
) -> Statement:
    """Units provisioned, revoked and refused in scope, priced per unit, at the newest stored checkpoint
    (signs nothing: the API's GET; 409 ``checkpoint_required`` if none covers the period), or with
    ``sign_checkpoint`` at one signed now (a write: the command line)."""
    scope = _scope(site_id, order_id, product_id, since, until)
    with inst.db.read() as s:
        if site_id is not None and s.get(Site, site_id.value) is None:
            raise NotFound(f"no site {site_id.value!r}", code="site_not_found")
        if order_id is not None and s.get(Order, order_id.value) is None:
            raise NotFound(f"no order {order_id.value!r}", code="order_not_found")
        if product_id is not None and s.get(Product, product_id.value) is None:
            raise NotFound(f"no product {product_id.value!r}", code="product_not_found")
    checkpoint = document_checkpoint(inst, since=since, until=until, sign=sign_checkpoint)
    computed = royalty_statement(_entries(inst, checkpoint.size), scope)
    computed.tree_size = checkpoint.size
    body = {
        **signed_head(inst, TITLE, checkpoint),
        "terms": "royalty per unit provisioned in the period at the rate in force when it was provisioned; "
        "revoked and refused units are reported, not charged or credited",
        **computed.to_dict(),
    }
    signature = base64.b64encode(merkle_log.ledger_signing_key(inst).sign(canonical_json(body))).decode()
    return Statement(body, signature, computed)


def statement_json(st: Statement) -> str:
    return json.dumps(st.to_dict(), indent=2, sort_keys=True) + "\n"


def to_csv(st: Statement) -> str:
    """One row per statement line (site, order, product, rate), then the revoked and refused units."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["category", "site_id", "order_id", "product_id", "units", "rate", "currency", "amount", "detail"])
    for line in st.body["lines"]:
        rate = line["rate"]
        writer.writerow(
            [
                "provisioned",
                line["site_id"],
                line["order_id"],
                line["product_id"],
                line["units"],
                rate["amount"] if rate else "",
                line["currency"] or "",
                line["amount"] or "",
                f"{rate['basis']} rate, ledger entry {rate['entry']}" if rate else "no rate in force",
            ]
        )
    for currency, total in st.body["figures"]["totals"].items():
        writer.writerow(["total", "", "", "", "", "", currency, total, ""])
    for row in st.body["evidence"]["revoked"]:
        writer.writerow(["revoked", "", row["order_id"], "", 1, "", "", "", f"{row['serial']} entry {row['entry']}"])
    for row in st.body["evidence"]["refused"]:
        detail = f"{row['serial'] or '-'} {row['code']} entry {row['entry']}"
        writer.writerow(["refused", "", row["order_id"] or "", "", 1, "", "", "", detail])
    return out.getvalue()
