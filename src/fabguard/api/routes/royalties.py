"""Royalty rates (engineers set them, per product or per order) and the signed royalty statement."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from fabguard.api.deps import Engineer, Inst, Reader
from fabguard.api.media import JSON, answers
from fabguard.api.parsing import Timestamp
from fabguard.api.responses.ledger import SignedReport
from fabguard.api.responses.royalties import RoyaltyRate
from fabguard.domain.money import Money
from fabguard.domain.values import OrderId, ProductId, SiteId
from fabguard.service.ledger import reports
from fabguard.service.royalties import statement_pdf, statements

router = APIRouter(tags=["royalties"])


class RateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: str = Field(max_length=24, description='Per-unit royalty as decimal text, e.g. "0.42" (never a number)')
    currency: str = Field(max_length=3, description="ISO 4217 code, e.g. EUR")
    effective_from: Timestamp | None = Field(
        default=None, description="When it takes effect, RFC 3339 with its offset; now or later (default now)"
    )


@router.put("/api/v1/products/{product_id}/royalty-rate", response_model=RoyaltyRate)
def set_product_rate(inst: Inst, product_id: str, body: RateIn, p: Engineer) -> dict[str, Any]:
    """The product's per-unit royalty from ``effective_from`` on (a ledger event; earlier periods keep theirs)."""
    rate = Money.parse(body.amount, body.currency)
    view = statements.set_rate(
        inst, rate=rate, actor=p.actor, product_id=ProductId.named(product_id), effective_from=body.effective_from
    )
    return view.to_dict()


@router.put("/api/v1/orders/{order_id}/royalty-rate", response_model=RoyaltyRate)
def set_order_rate(inst: Inst, order_id: str, body: RateIn, p: Engineer) -> dict[str, Any]:
    """An order's own per-unit royalty, overriding its product's from ``effective_from`` on."""
    rate = Money.parse(body.amount, body.currency)
    view = statements.set_rate(
        inst, rate=rate, actor=p.actor, order_id=OrderId.named(order_id), effective_from=body.effective_from
    )
    return view.to_dict()


@router.get("/api/v1/royalties/rates", response_model=list[RoyaltyRate])
def list_rates(
    inst: Inst, _: Reader, product_id: str | None = None, order_id: str | None = None
) -> list[dict[str, Any]]:
    """Every rate set, oldest first (each names the ledger entry that records it)."""
    return [r.to_dict() for r in statements.list_rates(inst, product_id=product_id, order_id=order_id)]


@router.get(
    "/api/v1/royalties/statement",
    **answers("The signed statement", JSON, "text/csv", "application/pdf"),
    response_model=SignedReport,
)
def royalty_statement(
    inst: Inst,
    _: Reader,
    site_id: str | None = None,
    order_id: str | None = None,
    product_id: str | None = None,
    since: Timestamp | None = None,
    until: Timestamp | None = None,
    format: Literal["json", "csv", "pdf"] = "json",
) -> Any:
    """Units provisioned (priced per unit), revoked and refused, per site, order and product, at the newest
    stored checkpoint; json, csv or pdf. Signs no checkpoint and writes nothing: 409 ``checkpoint_required``
    before the first checkpoint, or when ``until`` is given and ledger entries after the newest checkpoint
    fall in the period (``POST /api/v1/ledger/checkpoint`` first). JSON embeds its signature; CSV and PDF
    carry theirs in ``X-FabGuard-Signature`` (Ed25519 by the ledger key, base64)."""
    st = statements.statement(
        inst,
        site_id=SiteId.named(site_id) if site_id else None,
        order_id=OrderId.named(order_id) if order_id else None,
        product_id=ProductId.named(product_id) if product_id else None,
        since=since,
        until=until,
    )
    if format == "json":
        return st.to_dict()
    if format == "csv":
        data, media = statements.to_csv(st).encode(), "text/csv"
    else:
        data, media = statement_pdf.to_pdf(st), "application/pdf"
    return Response(data, media_type=media, headers={"X-FabGuard-Signature": reports.sign_bytes(inst, data)})
