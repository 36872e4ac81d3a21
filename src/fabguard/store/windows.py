"""Window queries over the analytics rollups (ADR 0005): sums over any time window and scope.

Sums over a window read its whole hours from the hour rollups and only the minutes at its edges from
the minute ones (``window_rows``), so a week costs about as much as an hour.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, Subquery, and_, func, or_, select, union_all
from sqlalchemy.orm import Session

from fabguard.analytics.production import YieldStats
from fabguard.store.analytics_models import (
    FailureHour,
    FailureMinute,
    FixtureActivity,
    MeasurementHour,
    StatsHour,
    StatsMinute,
    YieldHour,
    YieldMinute,
)

REFUSAL_KINDS = ("unit.refused", "test.refused", "request.refused")


@dataclass(frozen=True)
class MeasurementSums:
    """A measurement's sums over a scope's hours: of ``v - ref`` and its square, of moving ranges, and
    the newest limits seen (what ``capability_from_sums`` takes)."""

    phase: str
    name: str
    n: int
    total: float
    total_sq: float
    mr_total: float
    mr_n: int
    lower: float | None
    upper: float | None
    ref: float


def at_minute(minute: int) -> datetime:
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
    # With ``order_id``: the units never provisioned (order "") first tested at this site count too
    # (an order alone at its site owns that site's scrapped boards; docs/figures.md).
    unprovisioned_site: str | None = None

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
        if orders_too and self.order_id is not None and self.unprovisioned_site is not None:
            clauses.append(
                or_(
                    table.c.order_id == self.order_id,
                    and_(table.c.order_id == "", table.c.site_id == self.unprovisioned_site),
                )
            )
        elif orders_too and self.order_id is not None:
            clauses.append(table.c.order_id == self.order_id)
        if orders_too and self.order_ids is not None:
            clauses.append(table.c.order_id.in_(self.order_ids))
        return clauses


def _no_extra(table: Any) -> list[ColumnElement[bool]]:
    return []


def window_rows(
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


def refusals(s: Session, scope: Scope) -> dict[str, dict[str, int]]:
    """Refusals in the scope, by event kind and reason code."""
    t = window_rows(
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


def unit_yield(s: Session, scope: Scope) -> YieldStats:
    """The yield of the units first tested in the scope."""
    t = window_rows(scope, YieldMinute.__table__, YieldHour.__table__, _YIELD_COLUMNS)
    row = s.execute(select(*(func.coalesce(func.sum(t.c[c]), 0) for c in _YIELD_COLUMNS))).one()
    return YieldStats(*(int(x) for x in row))


def _counts_per_unit(s: Session, scope: Scope, *, orders_too: bool, hours: bool) -> list[tuple[int, str, str, int]]:
    """Provisioned units and tests per minute (or, with ``hours``, per hour: the hour rollup) in the scope."""
    t = StatsHour.__table__ if hours else StatsMinute.__table__
    unit = t.c.hour if hours else t.c.minute
    lo, hi = scope.minutes
    if hours:
        lo, hi = lo // 60, -(-hi // 60)
    return [
        (int(m), kind, code, int(n))
        for m, kind, code, n in s.execute(
            select(unit, t.c.kind, t.c.code, func.sum(t.c.n))
            .where(
                unit >= lo,
                unit < hi,
                *scope.filters(t, orders_too=orders_too),
                t.c.kind.in_(("unit.provisioned", "test.recorded")),
            )
            .group_by(unit, t.c.kind, t.c.code)
        )
    ]


def counts(s: Session, scope: Scope, kind: str) -> dict[str, int]:
    """Events of ``kind`` in the scope, by code (a test's outcome)."""
    t = window_rows(
        scope, StatsMinute.__table__, StatsHour.__table__, ("code", "n"), extra=lambda table: [table.c.kind == kind]
    )
    return {str(code): int(n) for code, n in s.execute(select(t.c.code, func.sum(t.c.n)).group_by(t.c.code))}


def series(s: Session, scope: Scope, width: timedelta) -> list[dict[str, Any]]:
    """Provisioned units and tests (passed/failed) per bucket of ``width`` (whole minutes). Buckets of
    whole hours start on the hour and are read from the hour rollup (a week costs as much as an hour)."""
    lo, hi = scope.minutes
    step = int(width.total_seconds() // 60)
    hours = step >= 60 and step % 60 == 0
    if hours:
        lo = lo // 60 * 60
    n = max(1, -(-(hi - lo) // step))
    made, passed, failed = [0] * n, [0] * n, [0] * n
    scale = 60 if hours else 1

    def slot(unit: int) -> int:
        return min(n - 1, max(0, (unit * scale - lo) // step))

    # Provisioned units follow the order filter; tests carry no order until their unit is provisioned,
    # so they follow the site and fixture filters only.
    for unit, kind, _, count in _counts_per_unit(s, scope, orders_too=True, hours=hours):
        if kind == "unit.provisioned":
            made[slot(unit)] += count
    for unit, kind, code, count in _counts_per_unit(s, scope, orders_too=False, hours=hours):
        if kind == "test.recorded":
            (passed if code == "PASS" else failed)[slot(unit)] += count
    return [
        {
            "start": at_minute(lo + i * step).isoformat(),
            "provisioned": made[i],
            "tests_passed": passed[i],
            "tests_failed": failed[i],
            "pass_rate": passed[i] / (passed[i] + failed[i]) if passed[i] + failed[i] else None,
        }
        for i in range(n)
    ]


def recent_provisioned(s: Session, since: datetime) -> dict[str, tuple[int, int]]:
    """Per order: units provisioned in the minutes since ``since`` and the last such minute."""
    t = StatsMinute.__table__
    return {
        order: (int(n), int(last))
        for order, n, last in s.execute(
            select(t.c.order_id, func.sum(t.c.n), func.max(t.c.minute))
            .where(t.c.minute >= int(since.timestamp() // 60), t.c.kind == "unit.provisioned")
            .group_by(t.c.order_id)
        )
    }


def measurement_sums(s: Session, scope: Scope) -> list[MeasurementSums]:
    """Each measurement's sums over the scope's hours (limits: the newest seen), sorted by phase and name.

    Summed by the database: a week of 8 fixtures' 20 measurements is ~27,000 hourly rows, which fetched and
    added up in Python took ~140 ms at any record count (session 12, 10M records); the answer is 20 rows. Each
    row's sums are about its own ``ref``; they are moved to the measurement's smallest ``ref`` (a value it
    took, so the sums stay exact at any magnitude) before they are added."""
    t = MeasurementHour.__table__
    lo, hi = int(scope.since.timestamp() // 3600), int(scope.until.timestamp() // 3600) + 1
    rows = select(t).where(t.c.hour >= lo, t.c.hour < hi, *scope.filters(t, orders_too=False)).cte("rows")
    refs = select(rows.c.phase, rows.c.name, func.min(rows.c.ref).label("r"), func.max(rows.c.hour).label("h"))
    g = refs.group_by(rows.c.phase, rows.c.name).subquery("g")
    same = and_(rows.c.phase == g.c.phase, rows.c.name == g.c.name)
    shift = rows.c.ref - g.c.r
    sums = (
        select(
            rows.c.phase,
            rows.c.name,
            func.sum(rows.c.n),
            func.sum(rows.c.total + rows.c.n * shift),
            func.sum(rows.c.total_sq + 2 * shift * rows.c.total + rows.c.n * shift * shift),
            func.sum(rows.c.mr_total),
            func.sum(rows.c.mr_n),
            g.c.r,
        )
        .join(g, same)
        .group_by(rows.c.phase, rows.c.name, g.c.r)
    )
    # The limits of the newest hour (of its rows, the last by site, order and fixture).
    newest = (
        select(rows.c.phase, rows.c.name, rows.c.lower, rows.c.upper)
        .join(g, and_(same, rows.c.hour == g.c.h))
        .order_by(rows.c.site_id, rows.c.order_id, rows.c.fixture_id)
    )
    limits = {(phase, name): (lower, upper) for phase, name, lower, upper in s.execute(newest)}
    return sorted(
        (
            MeasurementSums(
                phase,
                name,
                int(n),
                float(total),
                float(total_sq),
                float(mr),
                int(mr_n),
                *limits[(phase, name)],
                float(r),
            )
            for phase, name, n, total, total_sq, mr, mr_n, r in s.execute(sums)
        ),
        key=lambda m: (m.phase, m.name),
    )


def pareto(s: Session, scope: Scope, limit: int = 10) -> list[dict[str, object]]:
    """The phases and measurements that failed most in the scope, with their share of all failures."""
    t = window_rows(
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


def last_activity(s: Session) -> dict[str, datetime]:
    """Each fixture's last activity (when it last appeared in an event as the actor)."""
    return dict(s.execute(select(FixtureActivity.fixture_id, FixtureActivity.last_at)).all())
