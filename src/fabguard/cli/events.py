"""``fabguard events``: the decision log."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from fabguard.cli.common import console, opened
from fabguard.service.core import events


def events_cmd(
    after: Annotated[int, typer.Option(help="Only events after this sequence number")] = 0,
    limit: Annotated[int, typer.Option(help="At most this many")] = 50,
    kind: Annotated[str | None, typer.Option(help="Only this kind, e.g. unit.refused")] = None,
    order: Annotated[str | None, typer.Option(help="Only this order")] = None,
) -> None:
    """The decision log, oldest first."""
    with opened() as inst:
        rows = events.list_events(inst, after=after, limit=limit, kind=kind, order_id=order)
    table = Table("seq", "at", "kind", "actor", "order", "serial", "code")
    for e in rows:
        table.add_row(
            str(e["seq"]),
            e["at"][:19],
            e["kind"],
            e["actor"] or "",
            e["order_id"] or "",
            e["serial"] or "",
            e["code"] or "",
        )
    console.print(table)
