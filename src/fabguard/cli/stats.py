"""``fabguard stats ...``: production figures, order burn-down and alerts from the analytics projection."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fabguard.cli.common import Instance, actor, command, console, opened, parse_time, print_json
from fabguard.cli.remote import Remote, through
from fabguard.domain.errors import InvalidRequest
from fabguard.runtime import tune_gc
from fabguard.service.analytics import dashboard_queries, projection

stats_app = typer.Typer(
    help="Production analytics: yield, throughput, refusals, failure Pareto, capability, alerts.",
    no_args_is_help=True,
)

# The longest window ``--hours`` may ask for (what the analytics service accepts: ten years).
MAX_HOURS = 3660 * 24
# Capability below these is shown red (not capable) and yellow (marginal).
CPK_RED = 1.0
CPK_YELLOW = 1.33

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (what the API returns) instead of tables")]


def _percent(value: object) -> str:
    return f"{value:.1%}" if isinstance(value, int | float) else "-"


def _number(value: object, digits: int = 4) -> str:
    if isinstance(value, bool) or value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return escape(str(value))


def _index(value: object) -> str:
    """A Cpk or Ppk, coloured by how capable it says the process is."""
    if not isinstance(value, int | float):
        return "-"
    colour = "red" if value < CPK_RED else "yellow" if value < CPK_YELLOW else "green"
    return f"[{colour}]{value:.2f}[/]"


def _when(iso: str) -> str:
    return datetime.fromisoformat(iso).isoformat(timespec="seconds")


def _yield_rows(table: Table, y: Mapping[str, Any]) -> None:
    table.add_row("units tested", _number(y["units_tested"]))
    table.add_row("tests", _number(y["tests"]))
    table.add_row("first-pass yield", f"{_percent(y['first_pass_yield'])} ({y['first_pass']} units)")
    table.add_row("final yield", f"{_percent(y['final_yield'])} ({y['final_pass']} units)")
    table.add_row("retest rate", f"{_percent(y['retest_rate'])} ({y['retested']} units)")
    table.add_row("scrap", f"{_percent(y['scrap_rate'])} ({y['scrapped']} units)")


def _refusal_table(refusals: Mapping[str, Mapping[str, int]]) -> Table:
    table = Table("kind", "reason", "refused", title="Refusals by reason")
    rows = sorted(
        ((kind, code, n) for kind, codes in refusals.items() for code, n in codes.items()), key=lambda r: -r[2]
    )
    for kind, code, n in rows:
        table.add_row(escape(kind), escape(code), str(n))
    if not rows:
        table.add_row("-", "none", "0")
    return table


def _pareto_table(failures: Iterable[Mapping[str, Any]]) -> Table:
    table = Table("phase", "measurement", "failures", "share", "cumulative", title="Failure Pareto")
    for f in failures:
        table.add_row(
            escape(str(f["phase"])),
            escape(str(f["measurement"] or "(phase)")),
            str(f["failures"]),
            _percent(f["share"]),
            _percent(f["cumulative_share"]),
        )
    if not table.rows:
        table.add_row("-", "no failures", "0", "-", "-")
    return table


def _capability_table(capability: Iterable[Mapping[str, Any]]) -> Table:
    table = Table(
        "phase",
        "measurement",
        "n",
        "mean",
        "sigma",
        "lower",
        "upper",
        "Cpk",
        "Ppk",
        title=f"Capability (Cpk/Ppk < {CPK_RED} red, < {CPK_YELLOW} yellow)",
    )
    for c in capability:
        table.add_row(
            escape(str(c["phase"])),
            escape(str(c["name"])),
            str(c["n"]),
            _number(c["mean"]),
            _number(c["sigma"]),
            _number(c["lower"]),
            _number(c["upper"]),
            _index(c["cpk"]),
            _index(c["ppk"]),
        )
    if not table.rows:
        table.add_row("-", "no measurements", "0", "-", "-", "-", "-", "-", "-")
    return table


def _lag_note(lag: object) -> None:
    if isinstance(lag, int) and lag > 0:
        console.print(
            f"[yellow]note:[/] the figures leave out the newest {lag} events; "
            "'fabguard stats catch-up' folds them in (a running server does so in the background)"
        )


def _print_breakdown(figures: Mapping[str, Any], refusals: Mapping[str, Mapping[str, int]]) -> None:
    """Refusals, the failure Pareto and capability, then how far behind the figures are."""
    console.print(_refusal_table(refusals))
    console.print(_pareto_table(figures["failures"]))
    console.print(_capability_table(figures["capability"]))
    _lag_note(figures["lag"])


@command(stats_app, "production")
def production(
    since: Annotated[
        str | None,
        typer.Option(
            help="Start of the window (ISO 8601 with zone, or a date: 00:00 UTC); default: --hours, or 8 h, before the end"
        ),
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="End of the window (ISO 8601 with zone, or a date: 00:00 UTC); default now")
    ] = None,
    hours: Annotated[
        float | None, typer.Option(help="Window length in hours, ending at --until (cannot go with --since)")
    ] = None,
    product: Annotated[
        str | None,
        typer.Option(help="Only units provisioned on this product's orders (tests are not filtered by product)"),
    ] = None,
    order: Annotated[
        str | None, typer.Option(help="Only units provisioned on this order (tests are not filtered by order)")
    ] = None,
    site: Annotated[str | None, typer.Option(help="Only this site: its tests, units and refusals")] = None,
    fixture: Annotated[str | None, typer.Option(help="Only this fixture (test station)")] = None,
    as_json: JsonOption = False,
) -> None:
    """Production figures over a window: units provisioned, throughput, tests, first-pass and final yield,
    retest rate, refusals by reason, the failure Pareto and per-measurement capability (Cpk, Ppk).

    The default window is the analytics window (8 h unless analytics.json says otherwise) up to now.
    """
    start, end = parse_time(since, "--since"), parse_time(until, "--until")
    if hours is not None:
        if since is not None:
            raise InvalidRequest("give --since or --hours, not both", code="invalid_window")
        if not (math.isfinite(hours) and 0 < hours <= MAX_HOURS):
            raise InvalidRequest(f"--hours must be more than 0 and at most {MAX_HOURS}", code="invalid_window")
    scope = {"product": product, "order": order, "site": site, "fixture": fixture}

    def local(inst: Instance) -> dict[str, Any]:
        first, last = _window(start, end, hours, inst.clock())
        return dashboard_queries.production(
            inst, since=first, until=last, product_id=product, order_id=order, site_id=site, fixture_id=fixture
        )

    def on_server(api: Remote) -> dict[str, Any]:
        first, last = _window(start, end, hours, datetime.now(UTC))
        window = {"since": first.isoformat() if first else None, "until": last.isoformat() if last else None}
        answer: dict[str, Any] = api.get("/api/v1/stats/production", **window, **scope)
        return answer

    try:
        figures = through(local, on_server)
    except OverflowError:  # a window reaching past year 1 or 9999
        raise InvalidRequest(
            "the window reaches outside the dates a calendar can hold", code="invalid_window"
        ) from None
    if as_json:
        print_json(figures)
        return
    window, scope = figures["window"], figures["scope"]
    named = ", ".join(f"{k.removesuffix('_id')} {escape(str(v))}" for k, v in scope.items() if v is not None)
    title = f"Production {_when(window['since'])} to {_when(window['until'])} ({window['hours']:.4g} h)"
    summary = Table("figure", "value", title=f"{title}, {named}" if named else title)
    summary.add_row("units provisioned", str(figures["provisioned"]))
    summary.add_row("throughput", f"{figures['throughput_per_hour']:.4g} units/h")
    tests = figures["tests"]
    outcomes = ", ".join(f"{escape(k)} {v}" for k, v in tests["by_outcome"].items())
    summary.add_row("tests", f"{tests['total']} ({outcomes})" if outcomes else "0")
    _yield_rows(summary, figures["yield"])
    console.print(summary)
    _print_breakdown(figures, figures["refusals"])


def _window(
    start: datetime | None, end: datetime | None, hours: float | None, now: datetime
) -> tuple[datetime | None, datetime | None]:
    if hours is None:
        return start, end
    end = end or now
    return end - timedelta(hours=hours), end


@command(stats_app, "order")
def order_cmd(
    order_id: Annotated[str, typer.Argument(help="The order (see 'fabguard order list')")],
    as_json: JsonOption = False,
) -> None:
    """One order: quota burn-down with projected exhaustion, its units' yield, refusals, and the
    failure Pareto and capability at its site since it was created."""
    figures: dict[str, Any] = through(
        lambda inst: dashboard_queries.order_stats(inst, order_id),
        lambda api: api.get(f"/api/v1/stats/orders/{order_id}"),
    )
    if as_json:
        print_json(figures)
        return
    o, burn = figures["order"], figures["burn_down"]
    table = Table(
        "figure", "value", title=f"Order {escape(o['id'])}: {escape(o['product_id'])} at {escape(o['site_id'])}"
    )
    table.add_row("state", escape(o["state"]))
    table.add_row("quota", str(burn["quota"]))
    table.add_row("used", str(burn["used"]))
    table.add_row("remaining", str(burn["remaining"]))
    table.add_row("rate", f"{burn['rate_per_hour']:.4g} units/h")
    table.add_row("projected exhaustion", burn["projected_exhaustion"] or "- (idle)")
    _yield_rows(table, figures["yield"])
    console.print(table)
    _print_breakdown(figures, {"unit.refused": figures["refused"]} if figures["refused"] else {})


ALERTS_SHOWN = 1000  # the API's most (GET /api/v1/alerts ?limit): locally and through --server alike


@command(stats_app, "alerts")
def alerts_cmd(
    show_all: Annotated[bool, typer.Option("--all", help="Include acknowledged alerts")] = False,
    as_json: JsonOption = False,
) -> None:
    """Alerts raised by the anomaly detectors: open ones (all with --all), most severe first; the first 1,000."""
    found: list[dict[str, object]] = through(
        lambda inst: [a.to_dict() for a in dashboard_queries.alerts(inst, open_only=not show_all, limit=ALERTS_SHOWN)],
        lambda api: api.get("/api/v1/alerts", state="all" if show_all else "open", limit=ALERTS_SHOWN),
    )
    if as_json:
        print_json(found)
        return
    table = Table(
        "id",
        "severity",
        "kind",
        "count",
        "message",
        "last seen",
        "acknowledged by",
        title="Alerts" if show_all else "Open alerts",
    )
    colours = {"critical": "bold red", "high": "red", "warning": "yellow"}
    for a in found:
        severity = str(a["severity"])
        table.add_row(
            escape(str(a["id"])),
            f"[{colours.get(severity, 'default')}]{escape(severity)}[/]",
            escape(str(a["kind"])),
            str(a["count"]),
            escape(str(a["message"])),
            str(a["last_at"])[:19],
            escape(str(a["acknowledged_by"] or "-")),
        )
    console.print(table)
    if not found:
        console.print("No alerts." if show_all else "No open alerts.")


@command(stats_app, "ack")
def ack(
    alert_id: Annotated[str, typer.Argument(help="The alert's id (see 'fabguard stats alerts')")],
    note: Annotated[str, typer.Option(help="Why, in words (kept in the ledger; at most 500 characters)")] = "",
) -> None:
    """Acknowledge an alert up to its newest evidence (recorded in the ledger); new evidence re-opens it."""
    done = through(
        lambda inst: dashboard_queries.acknowledge(inst, alert_id, actor=actor(inst), note=note).to_dict(),
        lambda api: api.post(f"/api/v1/alerts/{alert_id}/ack", {"note": note}),
    )
    console.print(
        f"Alert {escape(str(done['id']))} ({escape(str(done['kind']))}) acknowledged by "
        f"{escape(str(done['acknowledged_by']))}"
    )


@command(stats_app, "catch-up")
def catch_up() -> None:
    """Fold every event not yet in the analytics projection, e.g. after an upgrade or a bulk import
    (a running server keeps it up to date by itself)."""
    _fold_all(rebuild=False)


@command(stats_app, "rebuild")
def rebuild(
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation")] = False,
) -> None:
    """Empty the analytics projection and fold the whole event log again under the current settings
    (analytics.json), e.g. to judge history by new working hours or drift constants.

    Alerts are raised again from the evidence; acknowledgements, being events, are folded again too.
    The ledger and the events are not touched. A running server's figures are incomplete until done.
    """
    if not yes and not typer.confirm("Empty the analytics projection and fold every event again?"):
        raise typer.Exit(1)
    _fold_all(rebuild=True)


def _fold_all(*, rebuild: bool) -> None:
    tune_gc()
    started = time.monotonic()
    folded = 0
    with opened() as inst:
        if rebuild:
            projection.reset(inst)
        settings = dashboard_queries.load_settings(inst)
        behind = dashboard_queries.refresh(inst, settings, max_events=0)  # no folding: only how far behind it is
        with Progress(
            TextColumn("[bold]folding events"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task("catch-up", total=behind)
            while True:
                step = projection.advance(inst, settings, max_events=projection.BATCH)
                folded += step.events
                # A running server may add events (and fold some itself) meanwhile.
                left = max(dashboard_queries.current_sequence(inst) - step.cursor, 0)
                progress.update(task, completed=folded, total=folded + left)
                if step.events == 0 or left == 0:
                    break
    elapsed = time.monotonic() - started
    console.print(f"Projection up to date at event {step.cursor}: folded {folded} events in {elapsed:.1f} s")
