"""``fabguard unit ...``: provisioned units, one at a time (a whole order's: ``fabguard order revoke-units``)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from fabguard.cli.common import REASON_HELP, JsonOption, actor, command, console, print_json
from fabguard.cli.remote import through
from fabguard.service.authority import revocation
from fabguard.service.provisioning import units

unit_app = typer.Typer(help="Provisioned units: list, revoke.", no_args_is_help=True)


@command(unit_app, "list")
def unit_list(
    order: Annotated[str | None, typer.Option(help="Only this order's units")] = None,
    product: Annotated[str | None, typer.Option(help="Only this product's units")] = None,
    limit: Annotated[int, typer.Option(help=f"At most this many, newest first (1-{units.MAX_LIST})")] = 100,
    as_json: JsonOption = False,
) -> None:
    """Provisioned units, newest first: serial, product, order, issuing CA, certificate serial, state."""
    rows: list[dict[str, Any]] = through(
        lambda inst: [u.to_dict() for u in units.list_units(inst, order_id=order, product_id=product, limit=limit)],
        lambda api: api.get("/api/v1/units", order_id=order, product_id=product, limit=limit),
    )
    if as_json:
        print_json(rows)
        return
    table = Table("serial", "product", "order", "issuing CA", "cert serial", "issued", "state")
    for u in rows:
        state = f"revoked ({u['revocation_reason']})" if u["revoked_at"] else "active"
        table.add_row(
            u["serial"], u["product_id"], u["order_id"], u["issuing_ca"], u["cert_serial"], u["issued_at"], state
        )
    console.print(table)
    console.print(f"{len(rows)} units" + (" (the newest; raise --limit for more)" if len(rows) == limit else ""))


@command(unit_app, "revoke")
def unit_revoke(
    serial: Annotated[str, typer.Argument(help="The unit's serial")],
    note: Annotated[str, typer.Option(help="Why, in words (kept in the ledger)")],
    reason: Annotated[str, typer.Option(help=REASON_HELP)] = "unspecified",
    product: Annotated[str | None, typer.Option(help="Product, if the serial exists in several")] = None,
) -> None:
    """Revoke a unit's certificate; its serial can never be provisioned again."""
    done = through(
        lambda inst: revocation.revoke_unit(
            inst, serial, reason_code=reason, note=note, actor=actor(inst), product_id=product
        ),
        lambda api: api.post(f"/api/v1/units/{serial}/revoke", {"reason": reason, "note": note, "product_id": product}),
    )
    crl = (
        "the issuing CA's CRL is updated"
        if done.get("crl_updated", True)
        else "its CA is a site agent's, whose CRL this server does not sign: field checks here say revoked"
    )
    console.print(f"Unit {serial} revoked (certificate {done['cert_serial']}); {crl}")
