"""``fabguard unit ...``: provisioned units, one at a time (a whole order's: ``fabguard order revoke-units``)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from fabguard.cli.common import REASON_HELP, JsonOption, actor, command, console, opened, print_json
from fabguard.service.authority import revocation
from fabguard.service.provisioning import units

unit_app = typer.Typer(help="Provisioned units: list, revoke.", no_args_is_help=True)


def _unit_dict(u: units.UnitView) -> dict[str, object]:
    return {
        "serial": u.serial,
        "product_id": u.product_id,
        "order_id": u.order_id,
        "issuing_ca": u.issuing_ca,
        "cert_serial": u.cert_serial,
        "issued_at": u.issued_at.isoformat(),
        "revoked_at": u.revoked_at.isoformat() if u.revoked_at else None,
        "revocation_reason": u.revocation_reason,
        "identity": u.identity,
    }


@command(unit_app, "list")
def unit_list(
    order: Annotated[str | None, typer.Option(help="Only this order's units")] = None,
    product: Annotated[str | None, typer.Option(help="Only this product's units")] = None,
    limit: Annotated[int, typer.Option(help=f"At most this many, newest first (1-{units.MAX_LIST})")] = 100,
    as_json: JsonOption = False,
) -> None:
    """Provisioned units, newest first: serial, product, order, issuing CA, certificate serial, state."""
    with opened() as inst:
        rows = units.list_units(inst, order_id=order, product_id=product, limit=limit)
    if as_json:
        print_json([_unit_dict(u) for u in rows])
        return
    table = Table("serial", "product", "order", "issuing CA", "cert serial", "issued", "state")
    for u in rows:
        state = f"revoked ({u.revocation_reason})" if u.revoked_at else "active"
        table.add_row(u.serial, u.product_id, u.order_id, u.issuing_ca, u.cert_serial, u.issued_at.isoformat(), state)
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
    with opened() as inst:
        done = revocation.revoke_unit(
            inst, serial, reason_code=reason, note=note, actor=actor(inst), product_id=product
        )
    console.print(f"Unit {serial} revoked (certificate {done['cert_serial']}); the issuing CA's CRL is updated")
