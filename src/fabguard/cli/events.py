"""``fabguard events``: the decision log, once or followed as it grows (``--follow``), local or through --server."""

from __future__ import annotations

import json
import time as clock
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.table import Table

from fabguard.cli.common import JsonOption, console, opened, parse_time, print_json
from fabguard.cli.remote import connected, remote
from fabguard.service.core import events

FOLLOW_SECONDS = 1.0
"""How often ``--follow`` asks for new events (locally the database, remotely ``GET /api/v1/events``)."""

Page = Callable[[int], list[dict[str, Any]]]


def _table(rows: list[dict[str, Any]]) -> Table:
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
    return table


def _print(rows: list[dict[str, Any]], as_json: bool, follow: bool) -> None:
    if not as_json:
        console.print(_table(rows))
    elif follow:  # one object a line, so a consumer reads each event as it comes
        for e in rows:
            console.out(json.dumps(e, separators=(",", ":")), highlight=False)
    else:
        print_json(rows)


def _follow(page: Page, after: int, as_json: bool, stop_after: float | None) -> None:
    """Print each page of new events as it appears, until interrupted (or ``stop_after`` seconds)."""
    deadline = None if stop_after is None else clock.monotonic() + stop_after
    try:
        while deadline is None or clock.monotonic() < deadline:
            rows = page(after)
            if rows:
                _print(rows, as_json, True)
                after = int(rows[-1]["seq"])
                continue  # a full page may have more behind it
            clock.sleep(FOLLOW_SECONDS)
    except KeyboardInterrupt:
        return


def events_cmd(
    after: Annotated[int, typer.Option(help="Only events after this sequence number")] = 0,
    limit: Annotated[int, typer.Option(help="At most this many (each page, with --follow)")] = 50,
    kind: Annotated[str | None, typer.Option(help="Only this kind, e.g. unit.refused")] = None,
    order: Annotated[str | None, typer.Option(help="Only this order")] = None,
    since: Annotated[
        str | None, typer.Option(help="Only events at or after this time: ISO 8601 with zone, or a date (00:00 UTC)")
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new events as they come, until Ctrl-C")
    ] = False,
    follow_for: Annotated[
        float | None, typer.Option(help="With --follow: stop after this many seconds (for scripts)", hidden=True)
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """The decision log, oldest first; with --follow, new events as they are recorded (one JSON object a line
    with --json)."""
    start = parse_time(since, "--since")
    if remote():
        with connected() as api:

            def page(seq: int) -> list[dict[str, Any]]:
                since_text = start.isoformat() if start else None
                answer: list[dict[str, Any]] = api.get(
                    "/api/v1/events", after=seq, limit=limit, kind=kind, order_id=order, since=since_text
                )
                return answer

            _run(page, after, as_json, follow, follow_for)
        return
    with opened() as inst:

        def local_page(seq: int) -> list[dict[str, Any]]:
            found = events.list_events(inst, after=seq, limit=limit, kind=kind, order_id=order, since=start)
            return [dict(e) for e in found]

        _run(local_page, after, as_json, follow, follow_for)


def _run(page: Page, after: int, as_json: bool, follow: bool, follow_for: float | None) -> None:
    if follow:
        _follow(page, after, as_json, follow_for)
    else:
        _print(page(after), as_json, False)
