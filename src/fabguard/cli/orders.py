"""``fabguard order ...``: production orders, their quotas and dual-control raises, revoking their units."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, cast

import typer
from rich.table import Table

from fabguard.cli.common import (
    REASON_HELP,
    JsonOption,
    actor,
    approver,
    command,
    console,
    opened,
    parse_time,
    print_json,
    requester,
)
from fabguard.cli.remote import through
from fabguard.domain import values
from fabguard.domain.errors import InvalidRequest
from fabguard.service.approvals import requests
from fabguard.service.authority import revocation
from fabguard.service.catalog import identity_labels, orders
from fabguard.service.catalog.order_acts import OrderActivation

order_app = typer.Typer(help="Production orders: quotas, validity windows, dual-control raises.", no_args_is_help=True)

OrderId = Annotated[str, typer.Argument(help="The order's id (see 'fabguard order list')")]
ChangeId = Annotated[int, typer.Argument(help="The quota change's number (printed by 'fabguard order quota')")]


def _order_table(rows: list[dict[str, object]]) -> Table:
    """Orders as the API answers them (``OrderView.to_dict``), local or through --server alike."""
    table = Table("order", "product", "site", "state", "quota", "used", "remaining", "refused", "valid until")
    for o in rows:
        refused = cast(dict[str, int], o["refused"])
        until = o["valid_until"]
        table.add_row(
            str(o["id"]),
            str(o["product_id"]),
            str(o["site_id"]),
            str(o["state"]),
            str(o["quota"]),
            str(o["used"]),
            str(o["remaining"]),
            ", ".join(f"{k} {v}" for k, v in refused.items()) or "-",
            datetime.fromisoformat(str(until)).isoformat(timespec="seconds") if until else "-",
        )
    return table


def _show(rows: list[dict[str, object]], as_json: bool) -> None:
    if as_json:
        print_json(rows)
    else:
        console.print(_order_table(rows))


@command(order_app, "create")
def order_create(
    product: Annotated[str, typer.Option(help="Product id")],
    site: Annotated[str, typer.Option(help="Site id")],
    quota: Annotated[int, typer.Option(help="Units that may be provisioned")],
    order_id: Annotated[str | None, typer.Option("--id", help="Order id (generated if omitted)")] = None,
    valid_from: Annotated[
        str | None, typer.Option(help="ISO 8601 with zone, or a date: 00:00 UTC; default now")
    ] = None,
    valid_until: Annotated[
        str | None, typer.Option(help="ISO 8601 with zone, or a date (2027-03-31): 00:00 UTC; default open-ended")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Open an order: how many units of a product a site may provision, and when."""
    start, end = parse_time(valid_from, "--valid-from"), parse_time(valid_until, "--valid-until")
    body = {
        "id": order_id,
        "product_id": product,
        "site_id": site,
        "quota": quota,
        "valid_from": start.isoformat() if start else None,
        "valid_until": end.isoformat() if end else None,
    }
    view = through(
        lambda inst: orders.create_order(
            inst,
            order_id=values.OrderId(order_id) if order_id else None,
            product_id=values.ProductId.named(product),
            site_id=values.SiteId.named(site),
            quota=quota,
            actor=actor(inst),
            valid_from=start,
            valid_until=end,
        ).to_dict(),
        lambda api: api.post("/api/v1/orders", body),
    )
    _show([view], as_json)


@command(order_app, "list")
def order_list(as_json: JsonOption = False) -> None:
    """Every order with its quota, units used and left, and refusals by reason."""
    rows = through(lambda inst: [v.to_dict() for v in orders.list_orders(inst)], lambda api: api.get("/api/v1/orders"))
    _show(rows, as_json)


@command(order_app, "show")
def order_show(order_id: OrderId, as_json: JsonOption = False) -> None:
    """One order, with its pending quota changes."""
    view = through(
        lambda inst: orders.get_order(inst, order_id).to_dict(), lambda api: api.get(f"/api/v1/orders/{order_id}")
    )
    if as_json:
        print_json(view)
        return
    console.print(_order_table([view]))
    for c in cast(list[dict[str, object]], view["pending_quota_changes"]):
        console.print(f"pending quota change {c['id']}: to {c['new_quota']} by {c['requested_by']} ({c['reason']})")


def _set_state(order_id: str, new_state: values.OrderState) -> None:
    view = through(
        lambda inst: orders.set_order_state(inst, order_id, new_state, actor=actor(inst)).to_dict(),
        lambda api: api.post(f"/api/v1/orders/{order_id}/state", {"state": new_state.value}),
    )
    console.print(_order_table([view]))


@command(order_app, "suspend")
def order_suspend(order_id: OrderId) -> None:
    """Stop provisioning on an order (resume later)."""
    _set_state(order_id, values.OrderState.SUSPENDED)


@command(order_app, "resume")
def order_resume(order_id: OrderId) -> None:
    """Ask for a suspended order to provision again: a second person approves ('fabguard approval approve')."""
    pending = through(
        lambda inst: requests.request(
            inst, values.OrderId(order_id).value, OrderActivation(), by=requester(inst)
        ).to_dict(),
        lambda api: api.post(f"/api/v1/orders/{order_id}/state", {"state": values.OrderState.ACTIVE.value}),
    )
    console.print(
        f"Resuming {order_id} is request {pending['id']}, [yellow]pending[/]: "
        f"a second person approves it with 'fabguard approval approve {pending['id']}'"
    )


@command(order_app, "close")
def order_close(order_id: OrderId) -> None:
    """Close an order for good."""
    _set_state(order_id, values.OrderState.CLOSED)


@command(order_app, "quota")
def order_quota(
    order_id: OrderId,
    new_quota: Annotated[int, typer.Argument(help="The new quota")],
    reason: Annotated[str, typer.Option(help="Why (kept in the event log)")],
) -> None:
    """Change a quota: a decrease applies now; an increase waits for a second approver."""
    change = through(
        lambda inst: orders.request_quota_change(inst, order_id, new_quota, reason=reason, actor=actor(inst)),
        lambda api: api.post(f"/api/v1/orders/{order_id}/quota-changes", {"quota": new_quota, "reason": reason}),
    )
    if change["state"] == "pending":
        console.print(
            f"Quota raise {change['id']} to {new_quota} is [yellow]pending[/]: "
            f"a second person approves it with 'fabguard order approve {change['id']}'"
        )
    else:
        console.print(f"Quota of {order_id} is now {new_quota}")


@command(order_app, "approve")
def order_approve(change_id: ChangeId) -> None:
    """Approve a pending quota raise (needs an approver's token in FABGUARD_TOKEN, not the requester's)."""
    change = through(
        lambda inst: orders.decide_quota_change(inst, change_id, approve=True, actor=approver(inst).actor),
        lambda api: api.post(f"/api/v1/quota-changes/{change_id}/approve"),
    )
    console.print(f"Quota change {change_id} applied: order {change['order_id']} quota {change['new_quota']}")


@command(order_app, "reject")
def order_reject(change_id: ChangeId) -> None:
    """Reject a pending quota raise (needs an approver's token in FABGUARD_TOKEN)."""
    through(
        lambda inst: orders.decide_quota_change(inst, change_id, approve=False, actor=approver(inst).actor),
        lambda api: api.post(f"/api/v1/quota-changes/{change_id}/reject"),
    )
    console.print(f"Quota change {change_id} rejected")


@command(order_app, "revoke-units")
def order_revoke_units(
    order_id: OrderId,
    note: Annotated[str, typer.Option(help="Why, in words (kept in the ledger)")],
    reason: Annotated[str, typer.Option(help=REASON_HELP)] = "unspecified",
) -> None:
    """Revoke every unit provisioned on an order."""
    n = through(
        lambda inst: revocation.revoke_order_units(inst, order_id, reason_code=reason, note=note, actor=actor(inst)),
        lambda api: api.post(f"/api/v1/orders/{order_id}/revoke-units", {"reason": reason, "note": note})["revoked"],
    )
    console.print(f"{n} units of {order_id} revoked; the issuing CA's CRL is updated")


@command(order_app, "labels")
def order_labels(
    order_id: OrderId,
    out: Annotated[Path, typer.Option(help="The file to write (a new one)")],
    format: Annotated[str, typer.Option(help="pdf (one page per label) or zpl (Zebra printers)")] = "pdf",
    check_url: Annotated[
        str | None, typer.Option(help="Field-check URL for the QR of units without Matter codes (https://...)")
    ] = None,
    title: Annotated[str | None, typer.Option(help="A caption printed on every label")] = None,
) -> None:
    """Labels for the order's allocated units: serial, MAC addresses and the QR code (Matter onboarding
    payload, or the field-check URL carrying the serial), as PDF or ZPL (docs/identities.md)."""
    if format not in ("pdf", "zpl"):
        raise InvalidRequest(f"--format is pdf or zpl, not {format[:20]!r}", code="invalid_label")
    if out.exists():
        raise InvalidRequest(f"{out} exists: labels go to a new file", code="invalid_label")
    with opened() as inst:
        data, count = identity_labels.order_labels(
            inst,
            values.OrderId.named(order_id),
            "pdf" if format == "pdf" else "zpl",
            check_url=check_url,
            title=title,
            actor=actor(inst),
        )
    out.write_bytes(data)
    console.print(f"{count} labels of order {order_id} written to {out}")
