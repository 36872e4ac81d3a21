"""The analytics projector: folds the event log, in sequence order, into rollups and stored alerts.

Dashboard queries over a million test records cannot scan them (ADR 0005); they read small tables the
projector keeps: counts per minute (``stats_minutes``), units by the minute of their first test
(``yield_minutes``, from ``unit_tests``), failed measurements (``failure_minutes``), the same three per
hour for long windows (``stats_hours``, ``yield_hours``, ``failure_hours``: written from the same
batch, so each is always its minute table summed per hour), measurement sums per hour
(``measurement_hours``), fixtures' last activity, and the alerts the detectors raised, merged.

The projector is a consumer of the log with a cursor, the ``analytics_state`` row ``cursor``. Each
batch is read and folded outside any write lock, then written in one short transaction that first
checks the cursor has not moved and moves it: whatever is derived is exactly the fold of events
``1..cursor``, on SQLite and across PostgreSQL processes alike (a second process that raced loses
the check, drops its work and starts again from the new cursor). A crash loses only uncommitted work.

Detector state that must outlive a batch (each order's recent throughput, each drift chart, the last
value of each measurement for moving ranges) lives in ``analytics_state`` too, and in process memory
while this process is the one moving the cursor.
"""

from __future__ import annotations

import functools
import json
import operator
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar, cast

from sqlalchemy import Select, Table, any_, bindparam, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from fabguard.analytics import (
    Acknowledgement,
    Alert,
    CopiedTestRecords,
    EventFact,
    MeasurementDrift,
    OffHoursActivity,
    Severity,
    TestFact,
    ThroughputSpike,
    default_event_detectors,
    merge_alerts,
    parse_working_hours,
)
from fabguard.analytics.detectors import EventDetector, OrderRate
from fabguard.analytics.drift import ChartKey, ChartState
from fabguard.analytics.facts import measured_value
from fabguard.domain.testrecord import StoredMeasurement, stored_rows
from fabguard.service.instance import Instance
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
from fabguard.store.db import Database
from fabguard.store.models import Event, Fixture, TestRecordRow

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
# Events per batch: one short write transaction each (a few thousand rows, tens of milliseconds).
BATCH = 5000
PASS = "PASS"
ACK_KIND = "alert.acknowledged"
COUNTED_KINDS = frozenset({"unit.provisioned", "unit.refused", "request.refused", "test.refused", "test.recorded"})


@dataclass(frozen=True)
class Detectors:
    """The detectors the projector runs, from the instance's analytics settings."""

    events: Sequence[EventDetector]
    spike: ThroughputSpike
    copies: CopiedTestRecords
    drift: MeasurementDrift
    key: str  # settings that change what is raised; a change applies from the next event on

    @classmethod
    def from_settings(cls, settings: Any, fixture_sites: Mapping[str, str]) -> Detectors:
        events: list[EventDetector] = list(default_event_detectors())
        if settings.working_hours:
            events.append(OffHoursActivity(parse_working_hours(settings.working_hours), dict(fixture_sites)))
        return cls(
            events,
            ThroughputSpike(rated_per_hour=settings.rated_units_per_hour),
            CopiedTestRecords(),
            MeasurementDrift(
                subgroup=settings.drift_subgroup,
                baseline=settings.drift_baseline,
                limit=settings.drift_limit,
                run=settings.drift_run,
                trend=settings.drift_trend,
            ),
            repr(settings),
        )


def minute_of(at: datetime) -> int:
    return int(at.timestamp() // 60)


def hour_of(at: datetime) -> int:
    return int(at.timestamp() // 3600)


# A measurement's (phase, name): its key among a fixture's last values and an hour's measurement sums.
NameKey = tuple[str, str]


@dataclass
class _Memory:
    """Detector state carried between batches; valid only at ``cursor`` (else reloaded from the database)."""

    cursor: int = -1
    rates: dict[str, OrderRate] = field(default_factory=dict)
    charts: dict[ChartKey, ChartState] = field(default_factory=dict)
    last_values: dict[str, dict[NameKey, float]] = field(default_factory=dict)  # fixture -> (phase, name) -> value


_memories: weakref.WeakKeyDictionary[Database, _Memory] = weakref.WeakKeyDictionary()
_locks: weakref.WeakKeyDictionary[Database, threading.Lock] = weakref.WeakKeyDictionary()
_registry_lock = threading.Lock()


def _lock_for(db: Database) -> threading.Lock:
    with _registry_lock:
        lock = _locks.get(db)
        if lock is None:
            lock = _locks[db] = threading.Lock()
        return lock


def _state_key(*parts: str) -> str:
    return "\x1f".join(parts)


def _load_memory(s: Session, cursor: int) -> _Memory:
    memory = _Memory(cursor=cursor)
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


def _name_key(text: str) -> NameKey:
    phase, _, name = text.partition("\x1f")
    return phase, name


def read_cursor(s: Session) -> int:
    value = s.execute(select(AnalyticsState.value).where(AnalyticsState.key == CURSOR)).scalar_one_or_none()
    return int(value) if value is not None else 0


# A unit_tests row: site, order, fixture, first minute, tests, first and last outcome.
_UnitRow = tuple[str, str, str, int, int, str, str]


@dataclass
class _Fold:
    """What one batch adds, gathered in memory and written at once."""

    stats: dict[tuple[int, str, str, str, str, str], int] = field(default_factory=dict)
    # Tuples, not lists, in the two that take a row per unit: the batch keeps them until it is written,
    # and the garbage collector stops tracking tuples of plain values, where thousands of lists would
    # make it rescan the whole heap every batch or so.
    units: dict[str, _UnitRow] = field(default_factory=dict)  # serial -> UnitTests columns (changed rows)
    yields: dict[tuple[int, str, str, str], tuple[int, ...]] = field(default_factory=dict)
    failures: dict[tuple[int, str, str, str, str, str], int] = field(default_factory=dict)
    # (hour, site, fixture) -> (phase, name) -> [n, total, total_sq, low, high, mr_total, mr_n, fails, lower, upper]
    measures: dict[tuple[int, str, str], dict[NameKey, list[Any]]] = field(default_factory=dict)
    activity: dict[str, tuple[datetime, int]] = field(default_factory=dict)
    vectors: dict[str, tuple[str, int]] = field(default_factory=dict)
    hits: list[Alert] = field(default_factory=list)
    acks: list[Acknowledgement] = field(default_factory=list)
    # Detector state this batch changed: orders' rates, fixtures' last values (and the drift charts of
    # the sites and measurements in ``measures``, a superset: the state of an unchanged chart is rewritten).
    orders: set[str] = field(default_factory=set)
    fixtures: set[str] = field(default_factory=set)

    def count(self, key: tuple[int, str, str, str, str, str]) -> None:
        self.stats[key] = self.stats.get(key, 0) + 1


# A record's digest with what the copied-record check reports: record id, serial, fixture, outcome, at,
# seq, site.
_Copy = tuple[str, int, str, str, str, datetime, int, str]


def _parse(record_json: str) -> tuple[list[tuple[str, str]], list[StoredMeasurement]] | None:
    """A stored record's phases and measurements (it was checked when stored); None if unreadable."""
    try:
        return stored_rows(json.loads(record_json))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _chunks(items: Sequence[Any], size: int = 500) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _among_size(s: Session) -> int:
    """Values per ``_among``: a few hundred parameters on SQLite; one array, so a whole batch, on PostgreSQL."""
    return 5000 if s.get_bind().dialect.name == "postgresql" else 500


def _among(s: Session, column: Any, values: Sequence[Any]) -> Any:
    """``column IN (values)``; on PostgreSQL ``column = ANY(array)``, one parameter, so that the driver and
    the server see the same short statement every time rather than a new list of hundreds to parse."""
    if s.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=postgresql.ARRAY(column.type)))
    return column.in_(values)


def _unit(fold: _Fold, known_units: Mapping[str, UnitTests], serial: str) -> _UnitRow | None:
    """The unit's row as this batch has it so far: site, order, fixture, first minute, tests, first and last outcome."""
    current = fold.units.get(serial)
    if current is None and serial in known_units:
        u = known_units[serial]
        current = (u.site_id, u.order_id, u.fixture_id, u.first_minute, u.tests, u.first_outcome, u.last_outcome)
    return current


def _add_yield(fold: _Fold, key: tuple[int, str, str, str], delta: tuple[int, ...], sign: int = 1) -> None:
    totals = fold.yields.get(key)
    if totals is None:
        fold.yields[key] = tuple([sign * d for d in delta])
    else:
        fold.yields[key] = tuple([t + sign * d for t, d in zip(totals, delta, strict=True)])


def _attribute(fold: _Fold, known_units: Mapping[str, UnitTests], serial: str, order_id: str) -> None:
    """A unit provisioned on an order: its yield counts for the order from now on (once: the first order)."""
    current = _unit(fold, known_units, serial)
    if current is None or current[1]:
        return
    site, _, fixture, first_minute, tests, first_outcome, last_outcome = current
    contribution = (1, tests, int(first_outcome == PASS), int(last_outcome == PASS), int(tests > 1))
    _add_yield(fold, (first_minute, site, "", fixture), contribution, -1)
    _add_yield(fold, (first_minute, site, order_id, fixture), contribution)
    fold.units[serial] = (site, order_id, fixture, first_minute, tests, first_outcome, last_outcome)


def _fold_test(
    fold: _Fold,
    memory: _Memory,
    detectors: Detectors,
    e: EventFact,
    row: tuple[str, str, str, datetime, str],
    known_units: Mapping[str, UnitTests],
    copies: list[_Copy],
) -> None:
    """Fold one test record (parsed here, once, and dropped when done) into ``fold``; its digest goes to
    ``copies``, to be checked against the vectors already seen once the batch has been read."""
    serial, fixture_id, outcome, at, record_json = row
    site = e.site_id or ""
    timestamp = at.timestamp()
    minute = int(timestamp // 60)  # minute_of(at), hour_of(at) below
    passed = outcome == PASS
    # Yield: the unit's row, and its contribution to the minute of its first test.
    current = _unit(fold, known_units, serial)
    if current is None:
        current = (site, "", fixture_id, minute, 1, outcome, outcome)
        delta = (1, 1, int(passed), int(passed), 0)
    else:
        was_pass = current[6] == PASS
        delta = (0, 1, 0, int(passed) - int(was_pass), int(current[4] == 1))
        current = (*current[:4], current[4] + 1, current[5], outcome)
    fold.units[serial] = current
    _add_yield(fold, (current[3], current[0], current[1], current[2]), delta)
    record = _parse(record_json)
    if record is None:
        return
    phases, measurements = record
    # Failures and measurement sums (with moving ranges against the fixture's last value of each).
    last = memory.last_values.get(fixture_id)
    if last is None:
        last = memory.last_values[fixture_id] = {}
    gkey = (int(timestamp // 3600), site, fixture_id)
    group = fold.measures.get(gkey)
    if group is None:
        group = fold.measures[gkey] = {}
    failures = fold.failures
    failing = {name for name, p_outcome in phases if p_outcome not in (PASS, "SKIP")} if not passed else None
    for phase, name, m_outcome, v, lower, upper in measurements:
        failed = m_outcome == "FAIL"
        if failed:
            key6 = (minute, site, "", fixture_id, phase[:128], name[:128])
            failures[key6] = failures.get(key6, 0) + 1
            if failing:
                failing.discard(phase)
        if v is None:
            continue
        nk = (phase, name)
        agg = group.get(nk)
        if agg is None:  # sums are of v - ref (ref: the first value), exact for any magnitude
            agg = group[nk] = [0, 0.0, 0.0, v, v, 0.0, 0, 0, None, None, v]
        agg[0] += 1
        d = v - agg[10]
        agg[1] += d
        agg[2] += d * d
        if v < agg[3]:
            agg[3] = v
        elif v > agg[4]:
            agg[4] = v
        if failed:
            agg[7] += 1
        agg[8] = lower
        agg[9] = upper
        previous = last.get(nk)
        if previous is not None:
            agg[5] += abs(v - previous)
            agg[6] += 1
        last[nk] = v
    fold.fixtures.add(fixture_id)
    if failing:
        for phase in failing:
            key6 = (minute, site, "", fixture_id, phase[:128], "")
            failures[key6] = failures.get(key6, 0) + 1
    # Detectors on test records.
    values = tuple([measured_value(p, n, v, lo, hi) for p, n, _, v, lo, hi in measurements])
    record_id = int(e.detail.get("record_id", 0))
    digest = detectors.copies.vector_digest(values)
    if digest is not None:
        copies.append((digest, record_id, serial, fixture_id, outcome, at, e.seq, site))
    fact = TestFact(record_id, serial, fixture_id, outcome, at, values, seq=e.seq, site_id=site or None)
    fold.hits.extend(detectors.drift.feed(memory.charts, fact))


def _fold(
    s: Session, memory: _Memory, detectors: Detectors, rows: Sequence[Any], sites: Mapping[str, str]
) -> tuple[_Fold, int]:
    """Fold a batch of event rows into a ``_Fold``; reads what it needs (records, units, vectors) from ``s``.

    ``rows`` are plain tuples (seq, at, kind, order, fixture, serial, code, detail JSON, actor); each
    event's ``EventFact`` is made as it is folded, so that a batch keeps few objects alive."""
    fold = _Fold()
    details: list[dict[str, Any]] = [json.loads(row[7]) for row in rows]
    record_ids: list[int] = []
    provisioned: set[str] = set()
    for row, detail in zip(rows, details, strict=True):
        if row[2] == "test.recorded" and "record_id" in detail:
            record_ids.append(int(detail["record_id"]))
        elif row[2] == "unit.provisioned" and row[5]:
            provisioned.add(row[5])
    records: dict[int, tuple[str, str, str, datetime, str]] = {}
    for chunk in _chunks(record_ids, _among_size(s)):
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
                ).where(_among(s, TestRecordRow.id, chunk))
            )
            .all()
        ):
            records[rid] = cast(tuple[str, str, str, datetime, str], tuple(record))
    known_units: dict[str, UnitTests] = {}
    serials = {r[0] for r in records.values()} | provisioned
    for chunk in _chunks(sorted(serials), _among_size(s)):
        for u in s.execute(select(UnitTests).where(_among(s, UnitTests.serial, chunk))).scalars():
            known_units[u.serial] = u
    copies: list[_Copy] = []
    last_seq = memory.cursor
    hits = fold.hits
    event_detectors = detectors.events
    spike, rates = detectors.spike, memory.rates
    for (seq, at, kind, order_id, fixture_id, serial, code, _, actor), detail in zip(rows, details, strict=True):
        e = EventFact(seq, at, kind, order_id, fixture_id, serial, code, detail)
        last_seq = seq
        fixture = fixture_id or ""
        site = e.site_id or sites.get(fixture, "")
        if fixture_id and actor == "fixture:" + fixture_id:
            seen = fold.activity.get(fixture_id)
            fold.activity[fixture_id] = (at if seen is None else max(at, seen[0]), seq)
        if kind == ACK_KIND:
            up_to = detail.get("up_to_seq")
            fold.acks.append(
                Acknowledgement(str(detail.get("alert_id")), up_to if isinstance(up_to, int) else 0, actor or "unknown")
            )
            continue
        if kind not in COUNTED_KINDS:
            continue
        if kind == "test.recorded":
            code = str(detail.get("outcome", ""))[:40]
        fold.count((minute_of(at), kind, code or "", site, order_id or "", fixture))
        for detector in event_detectors:
            hit = detector.hit(e)
            if hit is not None:
                hits.append(hit)
        spiked = spike.feed(rates, e)
        if kind == "unit.provisioned":
            fold.orders.add(order_id or "")
            if serial and order_id:
                _attribute(fold, known_units, serial, order_id)
        if spiked is not None:
            hits.append(spiked)
        if kind == "test.recorded":
            record_id = detail.get("record_id")
            found = records.get(record_id) if isinstance(record_id, int) else None
            if found is not None:
                _fold_test(fold, memory, detectors, e, found, known_units, copies)
    _check_copies(s, fold, detectors.copies, copies)
    return fold, last_seq


def _check_copies(s: Session, fold: _Fold, detector: CopiedTestRecords, copies: Sequence[_Copy]) -> None:
    """The copied-record check of a batch's records, in order, against the vectors seen before and in it."""
    seen: dict[str, str] = {}
    for chunk in _chunks(sorted({c[0] for c in copies}), _among_size(s)):
        for digest, serial in (
            s.connection()
            .execute(select(TestVector.digest, TestVector.serial).where(_among(s, TestVector.digest, chunk)))
            .all()
        ):
            seen[digest] = serial
    for digest, record_id, serial, fixture_id, outcome, at, seq, site in copies:
        known = digest in seen
        fact = TestFact(record_id, serial, fixture_id, outcome, at, seq=seq, site_id=site or None)
        hit = detector.feed(seen, fact, digest)
        if not known:
            fold.vectors[digest] = (serial, record_id)
        if hit is not None:
            fold.hits.append(hit)


def _insert(s: Session, model: type[Base]) -> Any:
    dialect = s.get_bind().dialect.name
    table = cast(Table, model.__table__)
    return postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)


def _upsert(s: Session, model: type[Base], keys: Sequence[str], rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` or replace every other column of the rows already there (few rows, typed columns)."""
    if not rows:
        return
    stmt = _insert(s, model)
    table = cast(Table, model.__table__)
    others = [c.name for c in table.columns if c.name not in keys]
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c[k] for k in keys], set_={c: stmt.excluded[c] for c in others}
    )
    for chunk in _chunks(rows, 1000):
        s.execute(stmt, list(chunk))


# How ``_merge`` combines a new value with a row already there. SHIFTED_SUM and SHIFTED_SQUARES add
# sums of (v - ref) and (v - ref)^2 taken about the new row's ``ref`` to those of the row there, about
# its own ``ref`` (kept: KEEP), so sums of squares never suffer from a large mean (2.4e9 Hz +- 1 Hz).
ADD, REPLACE, LEAST, GREATEST, KEEP = "add", "replace", "least", "greatest", "keep"
SHIFTED_SUM, SHIFTED_SQUARES = "shifted_sum", "shifted_squares"


@functools.lru_cache(maxsize=64)
def _merge_sql(
    model: type[Base], dialect: str, columns: tuple[str, ...], keys: tuple[str, ...], how: tuple[str, ...]
) -> tuple[str, ...]:
    """The statements of a ``_merge``: on SQLite an ``INSERT .. ON CONFLICT (keys) DO UPDATE`` of one row
    (for ``executemany``); on PostgreSQL the creation of a temporary table (once per connection, emptied
    at each commit), the ``COPY`` into it, then that ``INSERT`` from it.

    Every name here is one of the models' own (no input reaches this text); values are parameters."""
    table = cast(Table, model.__table__).name
    on_sqlite = dialect == "sqlite"
    shift = f'(excluded."ref" - "{table}"."ref")'
    combine = {
        ADD: "{old} + {new}",
        REPLACE: "{new}",
        KEEP: "{old}",
        LEAST: ("min" if on_sqlite else "least") + "({old}, {new})",
        GREATEST: ("max" if on_sqlite else "greatest") + "({old}, {new})",
        SHIFTED_SUM: f'{{old}} + {{new}} + excluded."n" * {shift}',
        SHIFTED_SQUARES: f'{{old}} + {{new}} + 2 * {shift} * excluded."total" + excluded."n" * {shift} * {shift}',
    }
    others = [c for c in columns if c not in keys] if how else []
    sets = [
        f'"{c}" = ' + combine[h].format(old=f'"{table}"."{c}"', new=f'excluded."{c}"')
        for c, h in zip(others, how, strict=True)
    ]
    names = ", ".join(f'"{c}"' for c in columns)
    target = ", ".join(f'"{k}"' for k in keys)
    action = f"DO UPDATE SET {', '.join(sets)}" if sets else "DO NOTHING"
    if on_sqlite:
        values = "VALUES (" + ", ".join(["?"] * len(columns)) + ")"
        return (f'INSERT INTO "{table}" ({names}) {values} ON CONFLICT ({target}) {action}',)
    temp = f"projector_{table}"
    create = f'CREATE TEMPORARY TABLE IF NOT EXISTS "{temp}" ON COMMIT DELETE ROWS AS SELECT {names} FROM "{table}"'  # noqa: S608
    return (
        f"{create} WITH NO DATA",
        f'COPY "{temp}" ({names}) FROM STDIN',
        f'INSERT INTO "{table}" ({names}) SELECT {names} FROM "{temp}" ON CONFLICT ({target}) {action}',  # noqa: S608
    )


def _merge(
    s: Session,
    model: type[Base],
    columns: Sequence[str],
    keys: Sequence[str],
    how: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
) -> None:
    """Upsert ``rows`` (tuples of ``columns``, plain ints, floats, strings and None, no key twice), combining
    each non-key column with a row already there as ``how`` says (no ``how``: keep the row there).

    The bulk of a batch, so straight to the driver, without the ORM's per-row parameter handling: one
    ``executemany`` on SQLite, a ``COPY`` then one ``INSERT .. SELECT`` on PostgreSQL."""
    if not rows:
        return
    conn = s.connection()
    statements = _merge_sql(model, conn.dialect.name, tuple(columns), tuple(keys), tuple(how))
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(statements[0], list(rows))
        return
    create, copy_in, insert = statements
    with conn.connection.dbapi_connection.cursor() as cur:  # type: ignore[union-attr]
        cur.execute(create)
        with cur.copy(copy_in) as copy:
            for row in rows:
                copy.write_row(row)
        cur.execute(insert)


def alert_from_row(r: AlertRow) -> Alert:
    return Alert(
        id=r.id,
        kind=r.kind,
        severity=Severity(r.severity),
        message=r.message,
        evidence=tuple(json.loads(r.evidence)),
        count=r.count,
        first_at=r.first_at,
        last_at=r.last_at,
        order_id=r.order_id,
        site_id=r.site_id,
        fixture_id=r.fixture_id,
        acknowledged_by=r.acked_by if r.acked_up_to is not None and r.acked_up_to >= r.last_seq else None,
    )


def _alert_row(a: Alert, acked_by: str | None, acked_up_to: int | None) -> dict[str, Any]:
    return {
        "id": a.id,
        "kind": a.kind,
        "severity": int(a.severity),
        "message": a.message,
        "order_id": a.order_id,
        "site_id": a.site_id,
        "fixture_id": a.fixture_id,
        "count": a.count,
        "evidence": json.dumps(list(a.evidence)),
        "first_at": a.first_at,
        "last_at": a.last_at,
        "last_seq": a.last_seq,
        "acked_by": acked_by,
        "acked_up_to": acked_up_to,
    }


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


def _write(s: Session, fold: _Fold, memory: _Memory, last_seq: int) -> list[Alert]:
    """Write a batch's fold; returns the alerts it changed (as they now stand)."""
    dims = ("site_id", "order_id", "fixture_id")
    _merge(
        s,
        StatsMinute,
        ("minute", "kind", "code", *dims, "n"),
        ("minute", "kind", "code", *dims),
        (ADD,),
        [(*k, n) for k, n in fold.stats.items()],
    )
    _merge(
        s,
        StatsHour,
        ("hour", "kind", "code", *dims, "n"),
        ("hour", "kind", "code", *dims),
        (ADD,),
        [(*k, n) for k, n in _per_hour(fold.stats, operator.add).items()],
    )
    totals: dict[tuple[str, ...], int] = {}
    for k, n in fold.stats.items():
        totals[k[1:]] = totals.get(k[1:], 0) + n
    _merge(
        s,
        StatsTotal,
        ("kind", "code", *dims, "n"),
        ("kind", "code", *dims),
        (ADD,),
        [(*k, n) for k, n in totals.items()],
    )
    _merge(
        s,
        UnitTests,
        ("serial", *dims, "first_minute", "tests", "first_outcome", "last_outcome"),
        ("serial",),
        (REPLACE,) * 7,
        [(serial, *u) for serial, u in fold.units.items()],
    )
    _merge(
        s,
        YieldMinute,
        ("minute", *dims, "units", "tests", "first_pass", "final_pass", "retested"),
        ("minute", *dims),
        (ADD,) * 5,
        [(*k, *t) for k, t in fold.yields.items() if any(t)],  # a unit's move to its order can cancel out
    )
    _merge(
        s,
        YieldHour,
        ("hour", *dims, "units", "tests", "first_pass", "final_pass", "retested"),
        ("hour", *dims),
        (ADD,) * 5,
        [(*k, *t) for k, t in _per_hour(fold.yields, _add_counts).items() if any(t)],
    )
    _merge(
        s,
        FailureMinute,
        ("minute", *dims, "phase", "measurement", "n"),
        ("minute", *dims, "phase", "measurement"),
        (ADD,),
        [(*k, n) for k, n in fold.failures.items()],
    )
    _merge(
        s,
        FailureHour,
        ("hour", *dims, "phase", "measurement", "n"),
        ("hour", *dims, "phase", "measurement"),
        (ADD,),
        [(*k, n) for k, n in _per_hour(fold.failures, operator.add).items()],
    )
    # Names were checked to be at most 128 characters when the record was stored.
    _merge(
        s,
        MeasurementHour,
        (
            "hour",
            *dims,
            "phase",
            "name",
            "n",
            "total",
            "total_sq",
            "low",
            "high",
            "mr_total",
            "mr_n",
            "fails",
            "lower",
            "upper",
            "ref",
        ),
        ("hour", *dims, "phase", "name"),
        (ADD, SHIFTED_SUM, SHIFTED_SQUARES, LEAST, GREATEST, ADD, ADD, ADD, REPLACE, REPLACE, KEEP),
        [
            (hour, site, "", fixture, phase[:128], name[:128], *a)
            for (hour, site, fixture), group in fold.measures.items()
            for (phase, name), a in group.items()
        ],
    )
    if fold.activity:
        _upsert(
            s,
            FixtureActivity,
            ("fixture_id",),
            [{"fixture_id": f, "last_at": at, "last_seq": seq} for f, (at, seq) in fold.activity.items()],
        )
    _merge(
        s,
        TestVector,
        ("digest", "serial", "record_id"),
        ("digest",),
        (),
        [(d, serial, record_id) for d, (serial, record_id) in fold.vectors.items()],
    )
    changed = _write_alerts(s, fold)
    _write_state(s, fold, memory)
    return changed


def _write_alerts(s: Session, fold: _Fold) -> list[Alert]:
    ids = sorted({h.id for h in fold.hits} | {a.alert_id for a in fold.acks})
    if not ids:
        return []
    rows: dict[str, AlertRow] = {}
    for chunk in _chunks(ids, _among_size(s)):
        for r in s.execute(select(AlertRow).where(_among(s, AlertRow.id, chunk))).scalars():
            rows[r.id] = r
    alerts: dict[str, Alert] = {i: alert_from_row(r) for i, r in rows.items()}
    acks: dict[str, tuple[str | None, int | None]] = {i: (r.acked_by, r.acked_up_to) for i, r in rows.items()}
    touched: set[str] = set()
    for hit in fold.hits:
        alerts[hit.id] = merge_alerts(alerts.get(hit.id), hit)
        touched.add(hit.id)
    for ack in fold.acks:
        if ack.alert_id in alerts:
            previous = acks.get(ack.alert_id, (None, None))[1]
            if previous is None or ack.up_to_seq >= previous:
                acks[ack.alert_id] = (ack.actor, ack.up_to_seq)
                touched.add(ack.alert_id)
    out = []
    written = []
    for i in sorted(touched):
        by, up_to = acks.get(i, (None, None))
        row = _alert_row(alerts[i], by, up_to)
        out.append(alert_from_row(AlertRow(**row)))
        written.append(row)
    _upsert(s, AlertRow, ("id",), written)
    return out


def _write_state(s: Session, fold: _Fold, memory: _Memory) -> None:
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
    _upsert(s, AnalyticsState, ("key",), rows)


def _events_after(cursor: int, limit: int) -> Select[*tuple[Any, ...]]:
    return (
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


@dataclass(frozen=True)
class Advanced:
    """What one ``advance`` did."""

    cursor: int
    events: int
    alerts: tuple[Alert, ...]


def reset(inst: Instance) -> None:
    """Empty the projection and put the cursor back to 0, in one transaction: the next rounds fold the
    whole log again under the settings of the time (``fabguard stats rebuild``).

    The cursor row is written first, so a projector of another process that folded meanwhile either
    committed before (and its work is deleted here) or finds the cursor moved and drops its batch.
    """
    db = inst.db
    with _lock_for(db):
        with db.transaction() as s:
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
        _memories.pop(db, None)


def advance(inst: Instance, settings: Any, *, max_events: int | None = None, batch: int = BATCH) -> Advanced:
    """Fold events after the cursor (all of them, or about ``max_events``) into the analytics tables.

    Safe to call from any number of threads and processes at once; returns the cursor reached and the
    alerts changed on the way (for notification).
    """
    db = inst.db
    done = 0
    changed: dict[str, Alert] = {}
    cursor = 0
    with _lock_for(db):  # one projector per process at a time; other processes are handled by the cursor check
        while max_events is None or done < max_events:
            with db.read() as s:
                if not db.is_sqlite:
                    # Plan the batch's lookups against the tables as they are now: a generic plan the driver
                    # prepared while unit_tests or test_vectors were small would go on scanning them whole.
                    s.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
                cursor = read_cursor(s)
                rows = [tuple(row) for row in s.connection().execute(_events_after(cursor, batch)).all()]
                if not rows:
                    break
                memory = _memories.get(db)
                if memory is None or memory.cursor != cursor:
                    memory = _load_memory(s, cursor)
                    _memories[db] = memory
                memory.cursor = -1  # in flux until the batch commits
                sites = dict(s.execute(select(Fixture.id, Fixture.site_id)).all())
                detectors = Detectors.from_settings(settings, sites)
                fold, last_seq = _fold(s, memory, detectors, rows, sites)
            with db.transaction() as s:
                moved = s.execute(
                    update(AnalyticsState)
                    .where(AnalyticsState.key == CURSOR, AnalyticsState.value == str(cursor))
                    .values(value=str(last_seq))
                    .execution_options(synchronize_session=False)
                )
                if moved.rowcount != 1:  # type: ignore[attr-defined]
                    continue  # another process moved it: start again from there
                for alert in _write(s, fold, memory, last_seq):
                    changed[alert.id] = alert
            memory.cursor = last_seq
            done += len(rows)
            cursor = last_seq
    return Advanced(cursor, done, tuple(changed.values()))
