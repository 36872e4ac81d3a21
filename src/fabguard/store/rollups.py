"""The analytics projection's tables (ADR 0005): its cursor, the reads a batch's fold needs, and the
writes of what it gathered (rollups, fixtures' activity, test vectors, detector state).

The fold itself is pure (``fabguard.analytics.fold``); the transaction that checks and moves the
cursor is ``fabguard.service.analytics.projection``.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar, cast

from sqlalchemy import Table, select, text, update
from sqlalchemy.orm import Session

from fabguard.analytics.detectors import OrderRate
from fabguard.analytics.drift import ChartState
from fabguard.analytics.fold import EventRow, Fold, Memory, NameKey, RecordRow, UnitRow
from fabguard.store.analytics_models import (
    AlertRow,
    AnalyticsState,
    FailureHour,
    FailureMinute,
    FixtureActivity,
    MeasurementHour,
    StatsHour,
    StatsMinute,
    StatsTotal,
    TestVector,
    UnitTests,
    YieldHour,
    YieldMinute,
)
from fabguard.store.base import Base
from fabguard.store.models import Event, Fixture, TestRecordRow
from fabguard.store.upserts import (
    ADD,
    GREATEST,
    KEEP,
    LEAST,
    REPLACE,
    SHIFTED_SQUARES,
    SHIFTED_SUM,
    among,
    among_size,
    chunks,
    merge,
    upsert,
)

# A rollup row's counts: one count (stats, failures) or a tuple of them (yields).
_Counts = TypeVar("_Counts", int, tuple[int, ...])

CURSOR = "cursor"
# Every table the projection writes (the leases are not the projection's).
PROJECTED: tuple[type[Base], ...] = (
    AnalyticsState,
    StatsMinute,
    StatsHour,
    StatsTotal,
    UnitTests,
    YieldMinute,
    YieldHour,
    FailureMinute,
    FailureHour,
    MeasurementHour,
    FixtureActivity,
    TestVector,
    AlertRow,
)


def read_cursor(s: Session) -> int:
    """The last event folded (0: none)."""
    value = s.execute(select(AnalyticsState.value).where(AnalyticsState.key == CURSOR)).scalar_one_or_none()
    return int(value) if value is not None else 0


def move_cursor(s: Session, cursor: int, to: int) -> bool:
    """Move the cursor from ``cursor`` to ``to``; False (and nothing changed) if it is no longer at ``cursor``."""
    moved = s.execute(
        update(AnalyticsState)
        .where(AnalyticsState.key == CURSOR, AnalyticsState.value == str(cursor))
        .values(value=str(to))
        .execution_options(synchronize_session=False)
    )
    return bool(moved.rowcount == 1)  # type: ignore[attr-defined]


def clear(s: Session) -> None:
    """Put the cursor back to 0 (first, see ``fabguard.service.analytics.projection.reset``), then empty the projection."""
    s.execute(
        update(AnalyticsState)
        .where(AnalyticsState.key == CURSOR)
        .values(value="0")
        .execution_options(synchronize_session=False)
    )
    for model in PROJECTED:
        table = cast(Table, model.__table__)
        if model is AnalyticsState:
            s.execute(table.delete().where(table.c.key != CURSOR))
        else:
            s.execute(table.delete())


def plan_for_now(s: Session) -> None:
    """On PostgreSQL, plan the batch's lookups against the tables as they are now: a generic plan the
    driver prepared while unit_tests or test_vectors were small would go on scanning them whole."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))


def events_after(s: Session, cursor: int, limit: int) -> list[EventRow]:
    """Up to ``limit`` events after ``cursor``, in order, as plain tuples (what ``fold_events`` takes)."""
    query = (
        select(
            Event.seq,
            Event.at,
            Event.kind,
            Event.order_id,
            Event.fixture_id,
            Event.serial,
            Event.code,
            Event.detail,
            Event.actor,
        )
        .where(Event.seq > cursor)
        .order_by(Event.seq)
        .limit(limit)
    )
    return [cast(EventRow, tuple(row)) for row in s.connection().execute(query).all()]


def fixture_sites(s: Session) -> dict[str, str]:
    return dict(s.execute(select(Fixture.id, Fixture.site_id)).all())


def records(s: Session, record_ids: Sequence[int]) -> dict[int, RecordRow]:
    """The test records of these ids, by id."""
    out: dict[int, RecordRow] = {}
    for chunk in chunks(record_ids, among_size(s)):
        for rid, *record in (
            s.connection()
            .execute(  # Core rows, without the ORM's result handling
                select(
                    TestRecordRow.id,
                    TestRecordRow.serial,
                    TestRecordRow.fixture_id,
                    TestRecordRow.outcome,
                    TestRecordRow.received_at,
                    TestRecordRow.record_json,
                ).where(among(s, TestRecordRow.id, chunk))
            )
            .all()
        ):
            out[rid] = cast(tuple[str, str, str, datetime, str], tuple(record))
    return out


def units(s: Session, serials: Iterable[str]) -> dict[str, UnitRow]:
    """The stored ``unit_tests`` rows of these serials (those known), by serial."""
    t = UnitTests.__table__
    out: dict[str, UnitRow] = {}
    for chunk in chunks(sorted(serials), among_size(s)):
        for serial, *row in (
            s.connection()
            .execute(
                select(
                    t.c.serial,
                    t.c.site_id,
                    t.c.order_id,
                    t.c.fixture_id,
                    t.c.first_minute,
                    t.c.tests,
                    t.c.first_outcome,
                    t.c.last_outcome,
                ).where(among(s, t.c.serial, chunk))
            )
            .all()
        ):
            out[serial] = cast(UnitRow, tuple(row))
    return out


def vectors_seen(s: Session, digests: Sequence[str]) -> dict[str, str]:
    """The stored test vectors among ``digests`` (sorted), as digest -> the serial first seen with it."""
    seen: dict[str, str] = {}
    for chunk in chunks(digests, among_size(s)):
        for digest, serial in (
            s.connection()
            .execute(select(TestVector.digest, TestVector.serial).where(among(s, TestVector.digest, chunk)))
            .all()
        ):
            seen[digest] = serial
    return seen


def _state_key(*parts: str) -> str:
    return "\x1f".join(parts)


def _name_key(value: str) -> NameKey:
    phase, _, name = value.partition("\x1f")
    return phase, name


def load_memory(s: Session, cursor: int) -> Memory:
    """The detector state stored with the projection at ``cursor``."""
    memory = Memory(cursor=cursor)
    for key, value in s.execute(select(AnalyticsState.key, AnalyticsState.value)):
        kind, _, rest = key.partition("\x1f")
        if kind == "spike":
            memory.rates[rest] = OrderRate.from_json(json.loads(value))
        elif kind == "drift":
            site, phase, name = rest.split("\x1f", 2)
            memory.charts[(site, phase, name)] = ChartState.from_json(value)
        elif kind == "last":  # stored as {"phase\x1fname": value}
            memory.last_values[rest] = {_name_key(k): v for k, v in json.loads(value).items()}
    return memory


def write_state(s: Session, fold: Fold, memory: Memory) -> None:
    """Store the detector state the batch changed (orders' rates, drift charts, fixtures' last values)."""
    rows = []
    for order in sorted(fold.orders):
        if order in memory.rates:
            value = json.dumps(memory.rates[order].to_json(), separators=(",", ":"))
            rows.append({"key": _state_key("spike", order), "value": value})
    measured = {(site, phase, name) for (_, site, _), group in fold.measures.items() for phase, name in group}
    for site, phase, name in sorted(measured):
        chart = memory.charts.get((site, phase, name))
        if chart is not None:
            rows.append({"key": _state_key("drift", site, phase, name), "value": chart.to_json()})
    for fixture in sorted(fold.fixtures):
        if fixture in memory.last_values:
            last = {_state_key(*k): v for k, v in memory.last_values[fixture].items()}
            rows.append({"key": _state_key("last", fixture), "value": json.dumps(last, separators=(",", ":"))})
    upsert(s, AnalyticsState, ("key",), rows)


def _add_counts(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    return tuple([x + y for x, y in zip(a, b, strict=True)])


def _per_hour(
    rows: Mapping[tuple[Any, ...], _Counts], add: Callable[[_Counts, _Counts], _Counts]
) -> dict[tuple[Any, ...], _Counts]:
    """Counts keyed by (minute, *rest), summed by (hour, *rest) with ``add``: a batch's rows for the hour rollups."""
    hours: dict[tuple[Any, ...], _Counts] = {}
    for (minute, *rest), counts in rows.items():
        key = (minute // 60, *rest)
        known = hours.get(key)
        hours[key] = counts if known is None else add(known, counts)
    return hours


_DIMS = ("site_id", "order_id", "fixture_id")
_MEASURE_SUMS = ("n", "total", "total_sq", "low", "high", "mr_total", "mr_n", "fails", "lower", "upper", "ref")


def write_rollups(s: Session, fold: Fold) -> None:
    """Add a batch's counts to the minute, hour and total rollups; replace its units' rows; record its
    fixtures' activity and its new test vectors."""
    _write_stats(s, fold)
    _write_units_and_yields(s, fold)
    _write_failures_and_measures(s, fold)
    if fold.activity:
        upsert(
            s,
            FixtureActivity,
            ("fixture_id",),
            [{"fixture_id": f, "last_at": at, "last_seq": seq} for f, (at, seq) in fold.activity.items()],
        )
    merge(
        s,
        TestVector,
        ("digest", "serial", "record_id"),
        ("digest",),
        (),
        [(d, serial, record_id) for d, (serial, record_id) in fold.vectors.items()],
    )


def _write_stats(s: Session, fold: Fold) -> None:
    """Event counts per minute, per hour and in total."""
    dims = _DIMS
    merge(
        s,
        StatsMinute,
        ("minute", "kind", "code", *dims, "n"),
        ("minute", "kind", "code", *dims),
        (ADD,),
        [(*k, n) for k, n in fold.stats.items()],
    )
    merge(
        s,
        StatsHour,
        ("hour", "kind", "code", *dims, "n"),
        ("hour", "kind", "code", *dims),
        (ADD,),
        [(*k, n) for k, n in _per_hour(fold.stats, operator.add).items()],
    )
    totals: dict[tuple[Any, ...], int] = {}
    for k, n in fold.stats.items():
        totals[k[1:]] = totals.get(k[1:], 0) + n
    merge(
        s,
        StatsTotal,
        ("kind", "code", *dims, "n"),
        ("kind", "code", *dims),
        (ADD,),
        [(*k, n) for k, n in totals.items()],
    )


def _write_units_and_yields(s: Session, fold: Fold) -> None:
    """Each unit's test summary (replaced), and yields per minute and per hour."""
    dims = _DIMS
    merge(
        s,
        UnitTests,
        ("serial", *dims, "first_minute", "tests", "first_outcome", "last_outcome"),
        ("serial",),
        (REPLACE,) * 7,
        [(serial, *u) for serial, u in fold.units.items()],
    )
    merge(
        s,
        YieldMinute,
        ("minute", *dims, "units", "tests", "first_pass", "final_pass", "retested"),
        ("minute", *dims),
        (ADD,) * 5,
        [(*k, *t) for k, t in fold.yields.items() if any(t)],  # a unit's move to its order can cancel out
    )
    merge(
        s,
        YieldHour,
        ("hour", *dims, "units", "tests", "first_pass", "final_pass", "retested"),
        ("hour", *dims),
        (ADD,) * 5,
        [(*k, *t) for k, t in _per_hour(fold.yields, _add_counts).items() if any(t)],
    )


def _write_failures_and_measures(s: Session, fold: Fold) -> None:
    """Failed measurements per minute and per hour, and measurement sums per hour (for Cpk)."""
    dims = _DIMS
    merge(
        s,
        FailureMinute,
        ("minute", *dims, "phase", "measurement", "n"),
        ("minute", *dims, "phase", "measurement"),
        (ADD,),
        [(*k, n) for k, n in fold.failures.items()],
    )
    merge(
        s,
        FailureHour,
        ("hour", *dims, "phase", "measurement", "n"),
        ("hour", *dims, "phase", "measurement"),
        (ADD,),
        [(*k, n) for k, n in _per_hour(fold.failures, operator.add).items()],
    )
    # Names were checked to be at most 128 characters when the record was stored.
    merge(
        s,
        MeasurementHour,
        ("hour", *dims, "phase", "name", *_MEASURE_SUMS),
        ("hour", *dims, "phase", "name"),
        (ADD, SHIFTED_SUM, SHIFTED_SQUARES, LEAST, GREATEST, ADD, ADD, ADD, REPLACE, REPLACE, KEEP),
        [
            (hour, site, "", fixture, phase[:128], name[:128], *a)
            for (hour, site, fixture), group in fold.measures.items()
            for (phase, name), a in group.items()
        ],
    )
