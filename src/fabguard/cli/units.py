"""``fabguard unit ...``: provisioned units, one at a time (a whole order's: ``fabguard order revoke-units``)."""

from __future__ import annotations

from typing import Annotated

import typer

from fabguard.cli.common import REASON_HELP, actor, command, console, opened
from fabguard.service import revocation

unit_app = typer.Typer(help="Provisioned units: revocation.", no_args_is_help=True)


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
