"""``fabguard royalty ...``: per-unit royalty rates and the signed royalty statement."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from fabguard.cli.common import Instance, JsonOption, actor, command, console, fail, parse_time, print_json
from fabguard.cli.remote import Remote, through
from fabguard.domain.money import Money
from fabguard.domain.values import OrderId, ProductId, SiteId
from fabguard.ledger.royalty import RoyaltyScope
from fabguard.service.ledger import reports
from fabguard.service.royalties import statement_pdf, statements

royalty_app = typer.Typer(help="Royalty rates and signed royalty statements.", no_args_is_help=True)
rate_app = typer.Typer(help="Per-unit royalty rates, per product or per order.", no_args_is_help=True)
royalty_app.add_typer(rate_app, name="rate")


@command(rate_app, "set")
def rate_set(
    amount: Annotated[str, typer.Option(help='Per-unit royalty as decimal text, e.g. "0.42"')],
    currency: Annotated[str, typer.Option(help="ISO 4217 code, e.g. EUR")],
    product: Annotated[str | None, typer.Option(help="The product's rate")] = None,
    order: Annotated[str | None, typer.Option(help="An order's own rate, overriding its product's")] = None,
    effective_from: Annotated[
        str | None,
        typer.Option(
            "--from", help="Takes effect at this time (ISO 8601 with zone, or a date: 00:00 UTC; now or later)"
        ),
    ] = None,
) -> None:
    """Set a rate (a ledger event). It takes effect now or later, so past statements stay the same."""
    if (product is None) == (order is None):
        fail("name either --product or --order")
    rate = Money.parse(amount, currency)
    start = parse_time(effective_from, "--from")
    path = f"/api/v1/orders/{order}/royalty-rate" if order else f"/api/v1/products/{product}/royalty-rate"
    body = {"amount": amount, "currency": currency, "effective_from": start.isoformat() if start else None}
    view = through(
        lambda inst: statements.set_rate(
            inst,
            rate=rate,
            actor=actor(inst),
            product_id=ProductId.named(product) if product else None,
            order_id=OrderId.named(order) if order else None,
            effective_from=start,
        ).to_dict(),
        lambda api: api.put(path, body),
    )
    target = f"order {view['order_id']}" if view["order_id"] else f"product {view['product_id']}"
    console.print(
        f"Rate for {target}: {view['amount']} {view['currency']} per unit from {view['effective_from']} "
        f"(ledger entry {view['ledger_entry']})"
    )


@command(rate_app, "list")
def rate_list(
    product: Annotated[str | None, typer.Option(help="Only this product's")] = None,
    order: Annotated[str | None, typer.Option(help="Only this order's")] = None,
    as_json: JsonOption = False,
) -> None:
    """Every rate set, oldest first."""
    rows: list[dict[str, Any]] = through(
        lambda inst: [r.to_dict() for r in statements.list_rates(inst, product_id=product, order_id=order)],
        lambda api: api.get("/api/v1/royalties/rates", product_id=product, order_id=order),
    )
    if as_json:
        print_json(rows)
        return
    table = Table("product", "order", "per unit", "from", "set by", "ledger entry")
    for r in rows:
        table.add_row(
            r["product_id"],
            r["order_id"] or "-",
            f"{r['amount']} {r['currency']}",
            r["effective_from"],
            r["set_by"],
            str(r["ledger_entry"]),
        )
    console.print(table)


@command(royalty_app, "statement")
def statement(
    out: Annotated[
        Path,
        typer.Option(help="Directory for statement.json, .csv and .pdf, with statement.csv.sig and statement.pdf.sig"),
    ],
    site: Annotated[str | None, typer.Option(help="Only this CM site")] = None,
    order: Annotated[str | None, typer.Option(help="Only this order")] = None,
    product: Annotated[str | None, typer.Option(help="Only this product")] = None,
    since: Annotated[str | None, typer.Option(help="From this time (ISO 8601 with zone, or a date: 00:00 UTC)")] = None,
    until: Annotated[
        str | None, typer.Option(help="Until this time (ISO 8601 with zone, or a date: 00:00 UTC)")
    ] = None,
) -> None:
    """Units provisioned (priced), revoked and refused in the period, at a checkpoint of the whole ledger signed
    first (run locally, taking it is the operator's act; through --server the API's GET signs none: the
    statement stands at the newest stored checkpoint); all three files signed by the ledger key (check each
    with 'fabguard audit verify-report')."""
    start, end = parse_time(since, "--since"), parse_time(until, "--until")
    signed, table_bytes, pdf, signatures = through(
        lambda inst: _local_statement(inst, site, order, product, start, end),
        lambda api: _remote_statement(
            api,
            {"site_id": site, "order_id": order, "product_id": product, "since": start, "until": end},
        ),
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "statement.json").write_text(json.dumps(signed, indent=2, sort_keys=True) + "\n")
    (out / "statement.csv").write_bytes(table_bytes)
    (out / "statement.pdf").write_bytes(pdf)
    for name, sig in signatures.items():
        (out / name).write_text(sig + "\n")
    body = signed["report"]
    table = Table(
        "site", "order", "product", "units", "per unit", "amount", title=RoyaltyScope(**body["scope"]).describe()
    )
    for ln in body["lines"]:
        rate = ln["rate"]
        table.add_row(
            ln["site_id"],
            ln["order_id"],
            ln["product_id"],
            str(ln["units"]),
            f"{rate['amount']} {ln['currency']}" if rate else "no rate",
            ln["amount"] or "-",
        )
    console.print(table)
    f = body["figures"]
    totals = ", ".join(f"{v} {c}" for c, v in f["totals"].items()) or "nothing"
    console.print(
        f"Due: {totals}; {f['unrated']} units with no rate, {f['revoked']} revoked, {f['refused_total']} refused. "
        f"Computed at checkpoint size {body['checkpoint']['size']}; written to {out}"
    )


Signed = tuple[dict[str, Any], bytes, bytes, dict[str, str]]
"""A statement: its signed JSON, its CSV and PDF bytes, and their detached signatures by file name."""


def _local_statement(
    inst: Instance, site: str | None, order: str | None, product: str | None, since: Any, until: Any
) -> Signed:
    st = statements.statement(
        inst,
        site_id=SiteId.named(site) if site else None,
        order_id=OrderId.named(order) if order else None,
        product_id=ProductId.named(product) if product else None,
        since=since,
        until=until,
        sign_checkpoint=True,
    )
    pdf = statement_pdf.to_pdf(st)
    table_bytes = statements.to_csv(st).encode()
    # The JSON embeds its signature; the CSV and the PDF each get a detached one over their exact bytes
    # ('fabguard audit verify-report statement.csv' reads statement.csv.sig beside it).
    signatures = {
        "statement.csv.sig": reports.sign_bytes(inst, table_bytes),
        "statement.pdf.sig": reports.sign_bytes(inst, pdf),
    }
    return st.to_dict(), table_bytes, pdf, signatures


def _remote_statement(api: Remote, scope: dict[str, Any]) -> Signed:
    query = {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in scope.items()}
    path = "/api/v1/royalties/statement"
    csv = api.call("GET", path, params={**query, "format": "csv"})
    pdf = api.call("GET", path, params={**query, "format": "pdf"})
    signatures = {
        "statement.csv.sig": csv.headers["X-FabGuard-Signature"],
        "statement.pdf.sig": pdf.headers["X-FabGuard-Signature"],
    }
    return api.get(path, **query), csv.content, pdf.content, signatures
