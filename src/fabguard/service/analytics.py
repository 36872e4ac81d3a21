"""Production metrics and alerts, read from the analytics projection (ADR 0005).

The projector (``fabguard.service.projection``) folds the event log into per-minute and per-hour
rollups and stored alerts; the functions here read those small tables, so a dashboard query costs the
same at a thousand test records as at a million. Sums over a window read its whole hours from the hour
rollups and only the minutes at its edges from the minute ones (``_window_rows``), so a week costs
about as much as an hour. Every read first lets the projector catch up (a server's
background projector normally leaves nothing to do) and reports how many events it is still behind
(``lag``; 0 when what is shown covers every event).

An acknowledgement is itself an event, ``alert.acknowledged``, so it is in the ledger too; it covers
the evidence seen when it was made, and new evidence re-opens the alert.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, Subquery, func, select, union_all
from sqlalchemy.orm import Session

from fabguard.analytics import (
    Acknowledgement,
    Alert,
    Capability,
    YieldStats,
    capability_from_sums,
    drift,
    ordered,
    parse_working_hours,
    with_acknowledgements,
)
from fabguard.domain.errors import ConfigurationError, InvalidRequest, NotFound
from fabguard.service import fixtures, orders, projection
from fabguard.service.instance import Instance
from fabguard.service.projection import hour_of, minute_of
from fabguard.store import leases
from fabguard.store.analytics_models import (
    AlertRow,
    FailureHour,
    FailureMinute,
    FixtureActivity,
    MeasurementHour,
    StatsHour,
    StatsMinute,
    YieldHour,
    YieldMinute,
)
from fabguard.store.db import append_event, event_count
from fabguard.store.models import Order

log = logging.getLogger("fabguard.analytics")

ACK_KIND = projection.ACK_KIND
REFUSAL_KINDS = ("unit.refused", "test.refused", "request.refused")
# A read catches the projector up by at most this many events; more is left to the background
# projector (and shown as ``lag``), so a page never waits minutes behind a backlog.
READ_CATCH_UP = 20_000


@dataclass(frozen=True)
class AnalyticsSettings:
    """How far back analytics looks, and the rates it holds a line to."""

    window: timedelta = timedelta(hours=8)
    bucket: timedelta = timedelta(minutes=10)
    burn_window: timedelta = timedelta(hours=1)
    rated_units_per_hour: float | None = None
    # Per site: local working hours and their IANA zone, e.g. {"cm-a": ("06:00", "22:00", "Asia/Shanghai")};
    # line activity outside them raises ``off_hours_activity``. Sites not named here are not judged.
    working_hours: Mapping[str, tuple[str, str, str]] = field(default_factory=dict)
    # Measurement drift: Nelson rules on means of this many consecutive passing units, judged against a
    # chart set by the first ``drift_baseline`` such means of each site and measurement; rule 1 at
    # ``drift_limit`` sigma, rule 2 a run of ``drift_run``, rule 3 a trend of ``drift_trend`` (defaults
    # for high-volume lines; 3, 9 and 6 are the textbook constants, with about 1 % false signals).
    drift_subgroup: int = 5
    drift_baseline: int = 20
    drift_limit: float = drift.LIMIT
    drift_run: int = drift.RUN
    drift_trend: int = drift.TREND

    def __post_init__(self) -> None:
        parse_working_hours(self.working_hours)  # a bad time or zone fails here, not at the first alert
        if self.drift_subgroup < 1 or self.drift_baseline < 2:
            raise ValueError("drift_subgroup must be at least 1 and drift_baseline at least 2")
        if not (math.isfinite(self.drift_limit) and self.drift_limit > 0) or self.drift_run < 2 or self.drift_trend < 3:
            raise ValueError("drift_limit must be more than 0, drift_run at least 2 and drift_trend at least 3")
        for name, span in (("window", self.window), ("bucket", self.bucket), ("burn_window", self.burn_window)):
            if span < timedelta(minutes=1) or span % timedelta(minutes=1):
                raise ValueError(f"{name} must be a whole number of minutes (rollups are per minute)")


DEFAULT = AnalyticsSettings()
SETTINGS_FILE = "analytics.json"


def load_settings(inst: Instance) -> AnalyticsSettings:
    """The instance's analytics settings: ``<home>/analytics.json`` when present, else the defaults.

    The file is an object with any of ``window_hours``, ``bucket_minutes``, ``rated_units_per_hour``,
    ``working_hours`` (``{"cm-a": ["06:00", "22:00", "Asia/Shanghai"]}``), ``drift_subgroup``,
    ``drift_baseline``, ``drift_limit``, ``drift_run`` and ``drift_trend``. It is read on every call, so an edit takes effect without a restart; a broken
    file is a configuration error, never silently ignored.
    """
    path = inst.home / SETTINGS_FILE
    if not path.exists():
        return DEFAULT
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError("the file must hold a JSON object")
        known = {"window_hours", "bucket_minutes", "rated_units_per_hour", "working_hours"}
        known |= {"drift_subgroup", "drift_baseline", "drift_limit", "drift_run", "drift_trend"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown settings {sorted(unknown)}")
        hours = data.get("working_hours", {})
        if not isinstance(hours, dict):
            raise ValueError("working_hours must map a site to [start, end, zone]")
        return AnalyticsSettings(
            window=timedelta(hours=float(data.get("window_hours", DEFAULT.window.total_seconds() / 3600))),
            bucket=timedelta(minutes=float(data.get("bucket_minutes", DEFAULT.bucket.total_seconds() / 60))),
            rated_units_per_hour=data.get("rated_units_per_hour"),
            working_hours={str(site): (str(h[0]), str(h[1]), str(h[2])) for site, h in hours.items()},
            drift_subgroup=int(data.get("drift_subgroup", DEFAULT.drift_subgroup)),
            drift_baseline=int(data.get("drift_baseline", DEFAULT.drift_baseline)),
            drift_limit=float(data.get("drift_limit", DEFAULT.drift_limit)),
            drift_run=int(data.get("drift_run", DEFAULT.drift_run)),
            drift_trend=int(data.get("drift_trend", DEFAULT.drift_trend)),
        )
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise ConfigurationError(f"{path}: {exc}") from exc


def current_sequence(inst: Instance) -> int:
    """The newest event sequence: what the live stream polls."""
    with inst.db.read() as s:
        return event_count(s)


def refresh(
    inst: Instance, settings: AnalyticsSettings | None = None, *, max_events: int | None = READ_CATCH_UP
) -> int:
    """Let the projector catch up (by at most ``max_events``; None: all the way); returns the lag left."""
    reached = projection.advance(inst, settings or load_settings(inst), max_events=max_events).cursor
    with inst.db.read() as s:
        return max(event_count(s) - max(reached, projection.read_cursor(s)), 0)


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t else None


def _at_minute(minute: int) -> datetime:
    return datetime.fromtimestamp(minute * 60, UTC)


@dataclass(frozen=True)
class Scope:
    """What a figure is about: a time window and, optionally, one product, order, site or fixture."""

    since: datetime
    until: datetime
    product_id: str | None = None
    order_id: str | None = None
    site_id: str | None = None
    fixture_id: str | None = None
    # The orders a product filter stands for (filled by ``production``).
    order_ids: tuple[str, ...] | None = field(default=None, compare=False)

    @property
    def minutes(self) -> tuple[int, int]:
        """``[first, last)`` minutes: every minute that overlaps the window (rollups are per minute, so a
        window is widened to whole minutes: an order created at 10:23:22 counts the tests of 10:23)."""
        return math.floor(self.since.timestamp() / 60), math.ceil(self.until.timestamp() / 60)

    def where(self, table: Any, *, orders_too: bool = True) -> list[ColumnElement[bool]]:
        """The window's minutes and the filters, on a per-minute rollup."""
        lo, hi = self.minutes
        return [table.c.minute >= lo, table.c.minute < hi, *self.filters(table, orders_too=orders_too)]

    def filters(self, table: Any, *, orders_too: bool = True) -> list[ColumnElement[bool]]:
        """The site, fixture and (with ``orders_too``) order or product filters, on any rollup."""
        clauses: list[ColumnElement[bool]] = []
        if self.site_id is not None:
            clauses.append(table.c.site_id == self.site_id)
        if self.fixture_id is not None:
            clauses.append(table.c.fixture_id == self.fixture_id)
        if orders_too and self.order_id is not None:
            clauses.append(table.c.order_id == self.order_id)
        if orders_too and self.order_ids is not None:
            clauses.append(table.c.order_id.in_(self.order_ids))
        return clauses


def _no_extra(table: Any) -> list[ColumnElement[bool]]:
    return []


def _window_rows(
    scope: Scope,
    minute_table: Any,
    hour_table: Any,
    columns: Sequence[str],
    *,
    orders_too: bool = True,
    extra: Callable[[Any], Sequence[ColumnElement[bool]]] = _no_extra,
) -> Subquery:
    """The rows of a per-minute rollup in the scope's minutes, as ``columns`` (for the caller to sum):
    the whole hours inside the window from the per-hour rollup (the same counts, summed per hour) and
    only the minutes at the window's edges, before its first whole hour and after its last, from the
    per-minute one. The scope's filters and ``extra(table)`` apply to each part."""
    lo, hi = scope.minutes
    first_hour, end_hour = -(-lo // 60), hi // 60  # whole hours: [first_hour, end_hour)

    def part(table: Any, unit: Any, start: int, end: int) -> Select[Any]:
        clauses = [unit >= start, unit < end, *scope.filters(table, orders_too=orders_too), *extra(table)]
        return select(*(table.c[c] for c in columns)).where(*clauses)

    if first_hour >= end_hour:  # no whole hour inside: minutes only
        parts = [part(minute_table, minute_table.c.minute, lo, hi)]
    else:
        parts = [part(hour_table, hour_table.c.hour, first_hour, end_hour)]
        if lo < first_hour * 60:
            parts.append(part(minute_table, minute_table.c.minute, lo, first_hour * 60))
        if end_hour * 60 < hi:
            parts.append(part(minute_table, minute_table.c.minute, end_hour * 60, hi))
    return (parts[0] if len(parts) == 1 else union_all(*parts)).subquery("window_rows")


def _refusals(s: Session, scope: Scope) -> dict[str, dict[str, int]]:
    t = _window_rows(
        scope,
        StatsMinute.__table__,
        StatsHour.__table__,
        ("kind", "code", "n"),
        extra=lambda table: [table.c.kind.in_(REFUSAL_KINDS)],
    )
    out: dict[str, dict[str, int]] = {}
    for kind, code, n in s.execute(select(t.c.kind, t.c.code, func.sum(t.c.n)).group_by(t.c.kind, t.c.code)):
        out.setdefault(kind, {})[code or "unknown"] = int(n)
    return out


_YIELD_COLUMNS = ("units", "tests", "first_pass", "final_pass", "retested")


def _yield(s: Session, scope: Scope) -> YieldStats:
    t = _window_rows(scope, YieldMinute.__table__, YieldHour.__table__, _YIELD_COLUMNS)
    row = s.execute(select(*(func.coalesce(func.sum(t.c[c]), 0) for c in _YIELD_COLUMNS))).one()
    return YieldStats(*(int(x) for x in row))


def _counts_per_minute(s: Session, scope: Scope, *, orders_too: bool) -> list[tuple[int, str, str, int]]:
    t = StatsMinute.__table__
    return [
        (int(m), kind, code, int(n))
        for m, kind, code, n in s.execute(
            select(t.c.minute, t.c.kind, t.c.code, func.sum(t.c.n))
            .where(*scope.where(t, orders_too=orders_too), t.c.kind.in_(("unit.provisioned", "test.recorded")))
            .group_by(t.c.minute, t.c.kind, t.c.code)
        )
    ]


def _counts(s: Session, scope: Scope, kind: str) -> dict[str, int]:
    """Events of ``kind`` in the scope, by code (a test's outcome)."""
    t = _window_rows(
        scope, StatsMinute.__table__, StatsHour.__table__, ("code", "n"), extra=lambda table: [table.c.kind == kind]
    )
    return {str(code): int(n) for code, n in s.execute(select(t.c.code, func.sum(t.c.n)).group_by(t.c.code))}


def _series(s: Session, scope: Scope, width: timedelta) -> list[dict[str, Any]]:
    """Provisioned units and tests (passed/failed) per bucket of ``width`` (whole minutes)."""
    lo, hi = scope.minutes
    step = int(width.total_seconds() // 60)
    n = max(1, -(-(hi - lo) // step))
    made, passed, failed = [0] * n, [0] * n, [0] * n
    # Provisioned units follow the order filter; tests carry no order until their unit is provisioned,
    # so they follow the site and fixture filters only.
    for minute, kind, _, count in _counts_per_minute(s, scope, orders_too=True):
        if kind == "unit.provisioned":
            made[(minute - lo) // step] += count
    for minute, kind, code, count in _counts_per_minute(s, scope, orders_too=False):
        if kind == "test.recorded":
            (passed if code == "PASS" else failed)[(minute - lo) // step] += count
    return [
        {
            "start": _at_minute(lo + i * step).isoformat(),
            "provisioned": made[i],
            "tests_passed": passed[i],
            "tests_failed": failed[i],
            "pass_rate": passed[i] / (passed[i] + failed[i]) if passed[i] + failed[i] else None,
        }
        for i in range(n)
    ]


def _recent_provisioned(s: Session, since: datetime) -> dict[str, tuple[int, int]]:
    """Per order: units provisioned in the minutes since ``since`` and the last such minute."""
    t = StatsMinute.__table__
    return {
        order: (int(n), int(last))
        for order, n, last in s.execute(
            select(t.c.order_id, func.sum(t.c.n), func.max(t.c.minute))
            .where(t.c.minute >= minute_of(since), t.c.kind == "unit.provisioned")
            .group_by(t.c.order_id)
        )
    }


def _burn(
    order: orders.OrderView, recent: dict[str, tuple[int, int]], now: datetime, window: timedelta
) -> dict[str, object]:
    """Remaining quota and, at the rate of the last ``window``, when it runs out (None when idle)."""
    n, last = recent.get(order.id, (0, 0))
    rate = n / (window.total_seconds() / 3600)
    remaining = max(order.quota - order.used, 0)
    if remaining == 0:
        exhaustion: datetime | None = min(_at_minute(last + 1), now) if n else now
    elif rate > 0:
        exhaustion = now + timedelta(hours=remaining / rate)
    else:
        exhaustion = None
    return {
        "quota": order.quota,
        "used": order.used,
        "remaining": remaining,
        "rate_per_hour": rate,
        "projected_exhaustion": _iso(exhaustion),
    }


def _capability(s: Session, scope: Scope) -> list[Capability]:
    """Cp/Cpk and Pp/Ppk per measurement over the scope's hours (limits: the newest seen)."""
    t = MeasurementHour.__table__
    lo, hi = hour_of(scope.since), hour_of(scope.until) + 1
    clauses = [t.c.hour >= lo, t.c.hour < hi, *scope.filters(t, orders_too=False)]
    sums: dict[tuple[str, str], list[Any]] = {}
    for phase, name, hour, n, total, total_sq, mr_total, mr_n, lower, upper, ref in s.execute(
        select(
            t.c.phase,
            t.c.name,
            t.c.hour,
            t.c.n,
            t.c.total,
            t.c.total_sq,
            t.c.mr_total,
            t.c.mr_n,
            t.c.lower,
            t.c.upper,
            t.c.ref,
        ).where(*clauses)
    ):
        acc = sums.setdefault((phase, name), [0, 0.0, 0.0, 0.0, 0, -1, None, None, ref])
        # Each row's sums are about its own ref: move them to the accumulator's before adding.
        shift = ref - acc[8]
        acc[0] += n
        acc[1] += total + n * shift
        acc[2] += total_sq + 2 * shift * total + n * shift * shift
        acc[3] += mr_total
        acc[4] += mr_n
        if hour >= acc[5]:
            acc[5], acc[6], acc[7] = hour, lower, upper
    return [
        capability_from_sums(
            phase=phase,
            name=name,
            n=a[0],
            total=a[1],
            total_sq=a[2],
            mr_total=a[3],
            mr_n=a[4],
            lower=a[6],
            upper=a[7],
            ref=a[8],
        )
        for (phase, name), a in sorted(sums.items())
    ]


def _pareto(s: Session, scope: Scope, limit: int = 10) -> list[dict[str, object]]:
    """The phases and measurements that failed most in the scope, with their share of all failures."""
    t = _window_rows(
        scope, FailureMinute.__table__, FailureHour.__table__, ("phase", "measurement", "n"), orders_too=False
    )
    rows = s.execute(
        select(t.c.phase, t.c.measurement, func.sum(t.c.n).label("n")).group_by(t.c.phase, t.c.measurement)
    ).all()
    total = sum(int(r.n) for r in rows)
    top = sorted(rows, key=lambda r: (-int(r.n), r.phase, r.measurement))[:limit]
    out, running = [], 0
    for r in top:
        running += int(r.n)
        out.append(
            {
                "phase": r.phase,
                "measurement": r.measurement or None,
                "failures": int(r.n),
                "share": int(r.n) / total,
                "cumulative_share": running / total,
            }
        )
    return out


def _last_activity(s: Session) -> dict[str, datetime]:
    return dict(s.execute(select(FixtureActivity.fixture_id, FixtureActivity.last_at)).all())


def _alerts(s: Session) -> list[Alert]:
    return ordered(projection.alert_from_row(r) for r in s.execute(select(AlertRow)).scalars())


def order_stats(inst: Instance, order_id: str, *, settings: AnalyticsSettings | None = None) -> dict[str, Any]:
    """One order: quota burn-down, throughput, refusals, yield of its units, capability at its site."""
    settings = settings or load_settings(inst)
    lag = refresh(inst, settings)
    view = orders.get_order(inst, order_id)
    now = inst.clock()
    window = Scope(max(now - settings.window, view.created_at), now, order_id=order_id, site_id=view.site_id)
    since_created = Scope(view.created_at, now, order_id=order_id)
    with inst.db.read() as s:
        return {
            "order": view.to_dict(),
            "burn_down": _burn(view, _recent_provisioned(s, now - settings.burn_window), now, settings.burn_window),
            "yield": _yield(s, since_created).to_dict(),
            "refused": view.refused,
            "series": _series(s, window, settings.bucket),
            "capability": [c.to_dict() for c in _capability(s, Scope(view.created_at, now, site_id=view.site_id))],
            "failures": _pareto(s, Scope(view.created_at, now, site_id=view.site_id)),
            "as_of": now.isoformat(),
            "sequence": event_count(s),
            "lag": lag,
        }


def overview(inst: Instance, *, settings: AnalyticsSettings | None = None, alerts_limit: int = 50) -> dict[str, Any]:
    """Everything the dashboard shows at once: orders, fixtures, refusals, series, alerts."""
    settings = settings or load_settings(inst)
    lag = refresh(inst, settings)
    now = inst.clock()
    scope = Scope(now - settings.window, now)
    views = orders.list_orders(inst)
    with inst.db.read() as s:
        seq = event_count(s)
        last_seen = _last_activity(s)
        refusals = _refusals(s, scope)
        provisioned = int(s.execute(select(func.coalesce(func.sum(Order.used), 0))).scalar_one())
        yield_stats = _yield(s, scope)
        series = _series(s, scope, settings.bucket)
        recent = _recent_provisioned(s, now - settings.burn_window)
        order_rows = [{**v.to_dict(), "burn_down": _burn(v, recent, now, settings.burn_window)} for v in views]
        found = _alerts(s)
    fixture_rows = [
        {**fixtures.fixture_dict(f), "last_activity": _iso(last_seen.get(f.id) or f.enrolled_at)}
        for f in fixtures.list_fixtures(inst)
    ]
    return {
        "as_of": now.isoformat(),
        "sequence": seq,
        "lag": lag,
        "totals": {
            "orders": len(views),
            "active_orders": sum(1 for v in views if v.state == "active"),
            "provisioned": provisioned,
            "refused": sum(sum(c.values()) for c in refusals.values()),
            "open_alerts": sum(1 for a in found if not a.acknowledged),
        },
        "yield": yield_stats.to_dict(),
        "orders": order_rows,
        "fixtures": fixture_rows,
        "refusals": refusals,
        "series": series,
        "bucket_seconds": int(settings.bucket.total_seconds()),
        "alerts": [a.to_dict() for a in found[:alerts_limit]],
    }


def production(
    inst: Instance,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    product_id: str | None = None,
    order_id: str | None = None,
    site_id: str | None = None,
    fixture_id: str | None = None,
    settings: AnalyticsSettings | None = None,
    catch_up: int | None = READ_CATCH_UP,
) -> dict[str, Any]:
    """Production figures over any window (default: the settings' window up to now), for all of
    production or one product, order, site or fixture: tests, yield, throughput, provisioned units,
    refusals by reason, the failure Pareto and per-measurement capability.

    Tests and measurements belong to a site and fixture when they are made; a unit's tests count for
    an order (and its product) once the unit is provisioned on it, so an order's yield is that of its
    units, and units never provisioned count only for their site and fixture.
    """
    settings = settings or load_settings(inst)
    now = inst.clock()
    until = until or now
    since = since or until - settings.window
    if since >= until:
        raise InvalidRequest("the window must start before it ends", code="invalid_window")
    if until - since > timedelta(days=3660):
        raise InvalidRequest("a window may span at most ten years", code="invalid_window")
    lag = refresh(inst, settings, max_events=catch_up)
    with inst.db.read() as s:
        order_ids: tuple[str, ...] | None = None
        if product_id is not None:
            order_ids = tuple(s.execute(select(Order.id).where(Order.product_id == product_id)).scalars())
        for kind, value, model in (("order", order_id, Order),):
            if value is not None and s.get(model, value) is None:
                raise NotFound(f"no {kind} {value[:80]!r}", code=f"{kind}_not_found")
        scope = Scope(since, until, product_id, order_id, site_id, fixture_id, order_ids)
        # Per-unit yield follows orders; tests, failures and measurements follow sites and fixtures.
        tests_scope = Scope(since, until, site_id=site_id, fixture_id=fixture_id)
        provisioned = sum(_counts(s, scope, "unit.provisioned").values())
        outcomes = _counts(s, tests_scope, "test.recorded")
        hours = (until - since).total_seconds() / 3600
        figures = {
            "window": {"since": since.isoformat(), "until": until.isoformat(), "hours": hours},
            "scope": {"product_id": product_id, "order_id": order_id, "site_id": site_id, "fixture_id": fixture_id},
            "provisioned": provisioned,
            "throughput_per_hour": provisioned / hours,
            "tests": {
                "total": sum(outcomes.values()),
                "by_outcome": dict(sorted(outcomes.items())),
                "per_hour": sum(outcomes.values()) / hours,
            },
            "yield": _yield(s, scope if (order_id or product_id) else tests_scope).to_dict(),
            "refusals": _refusals(s, scope),
            "failures": _pareto(s, tests_scope),
            "capability": [c.to_dict() for c in _capability(s, tests_scope)],
            "sequence": event_count(s),
            "lag": lag,
        }
    return figures


def alerts(inst: Instance, *, settings: AnalyticsSettings | None = None) -> list[Alert]:
    """Every alert the detectors have raised, acknowledged ones marked, open ones first."""
    refresh(inst, settings)
    with inst.db.read() as s:
        return _alerts(s)


def acknowledge(
    inst: Instance, alert_id: str, *, actor: str, note: str = "", settings: AnalyticsSettings | None = None
) -> Alert:
    """Acknowledge an open alert up to its newest evidence; recorded as an ``alert.acknowledged`` event."""
    if len(note) > 500 or not note.isprintable():
        raise InvalidRequest("an acknowledgement note is at most 500 printable characters", code="invalid_note")
    alert = next((a for a in alerts(inst, settings=settings) if a.id == alert_id), None)
    if alert is None:
        raise NotFound(f"no alert {alert_id[:80]!r}", code="alert_not_found")
    with inst.db.transaction() as s:
        append_event(
            s,
            ACK_KIND,
            at=inst.clock(),
            actor=actor,
            order_id=alert.order_id,
            fixture_id=alert.fixture_id,
            detail={
                "alert_id": alert.id,
                "alert_kind": alert.kind,
                "up_to_seq": alert.last_seq,
                "note": note,
            },
        )
    return with_acknowledgements([alert], [Acknowledgement(alert.id, alert.last_seq, actor)])[0]


PROJECTOR_LEASE = "projector"


class Projector:
    """Keeps the analytics projection caught up on a daemon thread: reads then find nothing left to do.

    Every server process runs one, but only the holder of the ``projector`` lease folds: with several
    processes on one PostgreSQL database they would otherwise each read and fold every batch, and all
    but one would drop its work at the cursor check (correct, but that work is the costliest thing the
    server does). The lease is claimed or renewed every third of ``lease_seconds``; when its holder dies
    another process takes over within ``lease_seconds`` plus a third, and meanwhile every read still
    catches the projection up itself (``refresh``). The lease is judged by wall-clock time, not by the
    instance's clock. A failed round is logged and retried.
    """

    def __init__(self, inst: Instance, interval: float = 0.25, *, lease_seconds: float = 30.0) -> None:
        self.inst = inst
        self.interval = interval
        self.lease_seconds = lease_seconds
        self.hold = leases.Hold(
            inst.db, PROJECTOR_LEASE, ttl=timedelta(seconds=lease_seconds), clock=lambda: datetime.now(UTC)
        )
        self.folded = 0  # events this projector has folded
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fabguard-projector", daemon=True)

    def start(self) -> Projector:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _claim(self) -> bool:
        return self.hold.renew(timedelta(0)) or self.hold.take()

    def _run(self) -> None:
        next_claim = 0.0
        try:
            while not self._stop.wait(self.interval):
                try:
                    if time.monotonic() >= next_claim:
                        self._claim()
                        next_claim = time.monotonic() + self.lease_seconds / 3
                    if self.hold.held:
                        done = projection.advance(self.inst, load_settings(self.inst), max_events=READ_CATCH_UP)
                        self.folded += done.events
                except Exception:
                    log.exception("analytics projection round failed")
        finally:
            try:
                self.hold.release()  # a stopping server hands the work over at once
            except Exception:
                log.exception("could not release the projector lease")
