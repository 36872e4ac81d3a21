"""The analytics projector: folds the event log, in sequence order, into rollups and stored alerts.

Dashboard queries over a million test records cannot scan them (ADR 0005); they read small tables the
projector keeps: counts per minute (``stats_minutes``), units by the minute of their first test
(``yield_minutes``, from ``unit_tests``), failed measurements (``failure_minutes``), measurement sums
per hour (``measurement_hours``), fixtures' last activity, and the alerts the detectors raised, merged.

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

import json
import threading
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Select, Table, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from fabguard.analytics import (
    Acknowledgement,
    Alert,
    CopiedTestRecords,
    EventFact,
    MeasuredValue,
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
from fabguard.domain.testrecord import Measurement, PhaseResult, stored_results
from fabguard.service.instance import Instance
from fabguard.store.analytics_models import (
    AlertRow,
    AnalyticsState,
    FailureMinute,
    FixtureActivity,
    MeasurementHour,
    StatsMinute,
    StatsTotal,
    TestVector,
    UnitTests,
    YieldMinute,
)
from fabguard.store.db import Database
from fabguard.store.models import Base, Event, Fixture, TestRecordRow

CURSOR = "cursor"
# Events per batch: one short write transaction each.
BATCH = 2000
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
            MeasurementDrift(subgroup=settings.drift_subgroup, baseline=settings.drift_baseline),
            repr(settings),
        )


def minute_of(at: datetime) -> int:
    return int(at.timestamp() // 60)


def hour_of(at: datetime) -> int:
    return int(at.timestamp() // 3600)


@dataclass
class _Memory:
    """Detector state carried between batches; valid only at ``cursor`` (else reloaded from the database)."""

    cursor: int = -1
    rates: dict[str, OrderRate] = field(default_factory=dict)
    charts: dict[ChartKey, ChartState] = field(default_factory=dict)
    last_values: dict[str, dict[str, float]] = field(default_factory=dict)  # fixture -> phase\x1fname -> value


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
        elif kind == "last":
            memory.last_values[rest] = json.loads(value)
    return memory


def read_cursor(s: Session) -> int:
    value = s.execute(select(AnalyticsState.value).where(AnalyticsState.key == CURSOR)).scalar_one_or_none()
    return int(value) if value is not None else 0


@dataclass
class _Fold:
    """What one batch adds, gathered in memory and written at once."""

    stats: dict[tuple[int, str, str, str, str, str], int] = field(default_factory=dict)
    units: dict[str, list[Any]] = field(default_factory=dict)  # serial -> UnitTests columns (changed rows)
    yields: dict[tuple[int, str, str, str], list[int]] = field(default_factory=dict)
    failures: dict[tuple[int, str, str, str, str, str], int] = field(default_factory=dict)
    measures: dict[tuple[int, str, str, str, str, str], list[Any]] = field(default_factory=dict)
    activity: dict[str, tuple[datetime, int]] = field(default_factory=dict)
    vectors: dict[str, tuple[str, int]] = field(default_factory=dict)
    hits: list[Alert] = field(default_factory=list)
    acks: list[Acknowledgement] = field(default_factory=list)
    changed_state: set[str] = field(default_factory=set)

    def count(self, key: tuple[int, str, str, str, str, str]) -> None:
        self.stats[key] = self.stats.get(key, 0) + 1


@dataclass(frozen=True, slots=True)
class _Results:
    phases: tuple[PhaseResult, ...]
    measurements: tuple[Measurement, ...]


def _parse(record_json: str) -> _Results | None:
    """A stored record's phases and measurements (it was checked when stored); None if unreadable."""
    try:
        return _Results(*stored_results(json.loads(record_json)))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _chunks(items: Sequence[Any], size: int = 500) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _unit(fold: _Fold, known_units: Mapping[str, UnitTests], serial: str) -> list[Any] | None:
    """The unit's row as this batch has it so far: site, order, fixture, first minute, tests, first and last outcome."""
    current = fold.units.get(serial)
    if current is None and serial in known_units:
        u = known_units[serial]
        current = [u.site_id, u.order_id, u.fixture_id, u.first_minute, u.tests, u.first_outcome, u.last_outcome]
    return current


def _attribute(fold: _Fold, known_units: Mapping[str, UnitTests], serial: str, order_id: str) -> None:
    """A unit provisioned on an order: its yield counts for the order from now on (once: the first order)."""
    current = _unit(fold, known_units, serial)
    if current is None or current[1]:
        return
    contribution = [1, current[4], int(current[5] == PASS), int(current[6] == PASS), int(current[4] > 1)]
    for order, sign in (("", -1), (order_id, 1)):
        totals = fold.yields.setdefault((current[3], current[0], order, current[2]), [0, 0, 0, 0, 0])
        for i, c in enumerate(contribution):
            totals[i] += sign * c
    current[1] = order_id
    fold.units[serial] = current


def _fold_test(
    fold: _Fold,
    memory: _Memory,
    detectors: Detectors,
    e: EventFact,
    row: tuple[str, str, str, datetime, _Results | None],
    known_units: Mapping[str, UnitTests],
    seen_vectors: dict[str, str],
) -> None:
    serial, fixture_id, outcome, at, record = row
    site = e.site_id or ""
    minute = minute_of(at)
    passed = outcome == PASS
    # Yield: the unit's row, and its contribution to the minute of its first test.
    current = _unit(fold, known_units, serial)
    if current is None:
        current = [site, "", fixture_id, minute, 1, outcome, outcome]
        delta = [1, 1, int(passed), int(passed), 0]
    else:
        was_pass = current[6] == PASS
        delta = [0, 1, 0, int(passed) - int(was_pass), int(current[4] == 1)]
        current[4] += 1
        current[6] = outcome
    fold.units[serial] = current
    ykey = (current[3], current[0], current[1], current[2])
    totals = fold.yields.setdefault(ykey, [0, 0, 0, 0, 0])
    for i, d in enumerate(delta):
        totals[i] += d
    if record is None:
        return
    # Failures and measurement sums.
    hour = hour_of(at)
    last = memory.last_values.setdefault(fixture_id, {})
    failing_phases = {p.name for p in record.phases if p.outcome not in (PASS, "SKIP")}
    for m in record.measurements:
        if m.outcome == "FAIL":
            key6 = (minute, site, "", fixture_id, m.phase[:128], m.name[:128])
            fold.failures[key6] = fold.failures.get(key6, 0) + 1
            failing_phases.discard(m.phase)
        if m.value is None:
            continue
        mkey = (hour, site, "", fixture_id, m.phase[:128], m.name[:128])
        agg = fold.measures.get(mkey)
        if agg is None:
            # n, total, total_sq, low, high, mr_total, mr_n, fails, lower, upper
            agg = fold.measures[mkey] = [0, 0.0, 0.0, m.value, m.value, 0.0, 0, 0, m.lower, m.upper]
        agg[0] += 1
        agg[1] += m.value
        agg[2] += m.value * m.value
        agg[3] = min(agg[3], m.value)
        agg[4] = max(agg[4], m.value)
        agg[7] += int(m.outcome == "FAIL")
        agg[8], agg[9] = m.lower, m.upper
        name_key = _state_key(m.phase, m.name)
        previous = last.get(name_key)
        if previous is not None:
            agg[5] += abs(m.value - previous)
            agg[6] += 1
        last[name_key] = m.value
    fold.changed_state.add(_state_key("last", fixture_id))
    if outcome != PASS:
        for phase in failing_phases:
            key6 = (minute, site, "", fixture_id, phase[:128], "")
            fold.failures[key6] = fold.failures.get(key6, 0) + 1
    # Detectors on test records.
    fact = TestFact(
        int(e.detail.get("record_id", 0)),
        serial,
        fixture_id,
        outcome,
        at,
        tuple(MeasuredValue(m.phase, m.name, m.value, m.lower, m.upper) for m in record.measurements),
        seq=e.seq,
        site_id=site or None,
    )
    digest = detectors.copies.digest(fact)
    if digest is not None:
        known = digest in seen_vectors
        hit = detectors.copies.feed(seen_vectors, fact, digest)
        if not known:
            fold.vectors[digest] = (serial, fact.record_id)
        if hit is not None:
            fold.hits.append(hit)
    for hit in detectors.drift.feed(memory.charts, fact):
        fold.hits.append(hit)
    if passed:
        for mv in fact.measurements:
            if mv.value is not None:
                fold.changed_state.add(_state_key("drift", site, mv.phase, mv.name))


def _fold(
    s: Session, memory: _Memory, detectors: Detectors, rows: Sequence[Any], sites: Mapping[str, str]
) -> tuple[_Fold, int]:
    """Fold a batch of event rows into a ``_Fold``; reads what it needs (records, units, vectors) from ``s``."""
    fold = _Fold()
    events: list[EventFact] = []
    actors: dict[int, str | None] = {}
    for seq, at, kind, order_id, fixture_id, serial, code, detail, actor in rows:
        events.append(EventFact(seq, at, kind, order_id, fixture_id, serial, code, json.loads(detail)))
        actors[seq] = actor
    record_ids = [int(e.detail["record_id"]) for e in events if e.kind == "test.recorded" and "record_id" in e.detail]
    records: dict[int, tuple[str, str, str, datetime, _Results | None]] = {}
    digests: set[str] = set()
    for chunk in _chunks(record_ids):
        for rid, serial, fixture_id, outcome, at, raw in s.execute(
            select(
                TestRecordRow.id,
                TestRecordRow.serial,
                TestRecordRow.fixture_id,
                TestRecordRow.outcome,
                TestRecordRow.received_at,
                TestRecordRow.record_json,
            ).where(TestRecordRow.id.in_(chunk))
        ):
            record = _parse(raw)
            records[rid] = (serial, fixture_id, outcome, at, record)
            digest = detectors.copies.vector_digest(_values(record.measurements)) if record is not None else None
            if digest is not None:
                digests.add(digest)
    known_units: dict[str, UnitTests] = {}
    serials = {r[0] for r in records.values()} | {e.serial for e in events if e.kind == "unit.provisioned" and e.serial}
    for chunk in _chunks(sorted(serials)):
        for u in s.execute(select(UnitTests).where(UnitTests.serial.in_(chunk))).scalars():
            known_units[u.serial] = u
    seen_vectors: dict[str, str] = {}
    for chunk in _chunks(sorted(digests)):
        for digest, serial in s.execute(
            select(TestVector.digest, TestVector.serial).where(TestVector.digest.in_(chunk))
        ):
            seen_vectors[digest] = serial
    last_seq = memory.cursor
    for e in events:
        last_seq = e.seq
        fixture = e.fixture_id or ""
        site = e.site_id or sites.get(fixture, "")
        if e.fixture_id and actors.get(e.seq) == f"fixture:{e.fixture_id}":
            seen = fold.activity.get(e.fixture_id)
            fold.activity[e.fixture_id] = (e.at if seen is None else max(e.at, seen[0]), e.seq)
        if e.kind == ACK_KIND:
            up_to = e.detail.get("up_to_seq")
            actor = actors.get(e.seq) or "unknown"
            fold.acks.append(
                Acknowledgement(str(e.detail.get("alert_id")), up_to if isinstance(up_to, int) else 0, actor)
            )
            continue
        if e.kind not in COUNTED_KINDS:
            continue
        code = e.code or ""
        if e.kind == "test.recorded":
            code = str(e.detail.get("outcome", ""))[:40]
        fold.count((minute_of(e.at), e.kind, code, site, e.order_id or "", fixture))
        for detector in detectors.events:
            hit = detector.hit(e)
            if hit is not None:
                fold.hits.append(hit)
        spike = detectors.spike.feed(memory.rates, e)
        if e.kind == "unit.provisioned":
            fold.changed_state.add(_state_key("spike", e.order_id or ""))
            if e.serial and e.order_id:
                _attribute(fold, known_units, e.serial, e.order_id)
        if spike is not None:
            fold.hits.append(spike)
        if e.kind == "test.recorded":
            record_id = e.detail.get("record_id")
            found = records.get(record_id) if isinstance(record_id, int) else None
            if found is not None:
                _fold_test(fold, memory, detectors, e, found, known_units, seen_vectors)
    return fold, last_seq


def _values(measurements: Iterable[Any]) -> tuple[MeasuredValue, ...]:
    return tuple(MeasuredValue(m.phase, m.name, m.value, m.lower, m.upper) for m in measurements)


def _insert(s: Session, model: type[Base]) -> Any:
    dialect = s.get_bind().dialect.name
    table = cast(Table, model.__table__)
    return postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)


def _add_counts(
    s: Session, model: type[Base], keys: Sequence[str], adds: Sequence[str], rows: list[dict[str, Any]]
) -> None:
    """Upsert ``rows``, adding ``adds`` to what a row with the same ``keys`` already holds."""
    if not rows:
        return
    stmt = _insert(s, model)
    table = cast(Table, model.__table__)
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c[k] for k in keys],
        set_={a: table.c[a] + stmt.excluded[a] for a in adds},
    )
    for chunk in _chunks(rows, 1000):
        s.execute(stmt, list(chunk))


def _upsert(s: Session, model: type[Base], keys: Sequence[str], rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` or replace every other column of the rows already there."""
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


def _write(s: Session, fold: _Fold, memory: _Memory, last_seq: int) -> list[Alert]:
    """Write a batch's fold; returns the alerts it changed (as they now stand)."""
    _add_counts(
        s,
        StatsMinute,
        ("minute", "kind", "code", "site_id", "order_id", "fixture_id"),
        ("n",),
        [
            {"minute": k[0], "kind": k[1], "code": k[2], "site_id": k[3], "order_id": k[4], "fixture_id": k[5], "n": n}
            for k, n in fold.stats.items()
        ],
    )
    totals: dict[tuple[str, ...], int] = {}
    for k, n in fold.stats.items():
        totals[k[1:]] = totals.get(k[1:], 0) + n
    _add_counts(
        s,
        StatsTotal,
        ("kind", "code", "site_id", "order_id", "fixture_id"),
        ("n",),
        [
            {"kind": k[0], "code": k[1], "site_id": k[2], "order_id": k[3], "fixture_id": k[4], "n": n}
            for k, n in totals.items()
        ],
    )
    _upsert(
        s,
        UnitTests,
        ("serial",),
        [
            {
                "serial": serial,
                "site_id": u[0],
                "order_id": u[1],
                "fixture_id": u[2],
                "first_minute": u[3],
                "tests": u[4],
                "first_outcome": u[5],
                "last_outcome": u[6],
            }
            for serial, u in fold.units.items()
        ],
    )
    _add_counts(
        s,
        YieldMinute,
        ("minute", "site_id", "order_id", "fixture_id"),
        ("units", "tests", "first_pass", "final_pass", "retested"),
        [
            {
                "minute": k[0],
                "site_id": k[1],
                "order_id": k[2],
                "fixture_id": k[3],
                "units": t[0],
                "tests": t[1],
                "first_pass": t[2],
                "final_pass": t[3],
                "retested": t[4],
            }
            for k, t in fold.yields.items()
        ],
    )
    _add_counts(
        s,
        FailureMinute,
        ("minute", "site_id", "order_id", "fixture_id", "phase", "measurement"),
        ("n",),
        [
            {
                "minute": k[0],
                "site_id": k[1],
                "order_id": k[2],
                "fixture_id": k[3],
                "phase": k[4],
                "measurement": k[5],
                "n": n,
            }
            for k, n in fold.failures.items()
        ],
    )
    _write_measures(s, fold)
    if fold.activity:
        _upsert(
            s,
            FixtureActivity,
            ("fixture_id",),
            [{"fixture_id": f, "last_at": at, "last_seq": seq} for f, (at, seq) in fold.activity.items()],
        )
    if fold.vectors:
        stmt = _insert(s, TestVector).on_conflict_do_nothing()
        s.execute(stmt, [{"digest": d, "serial": v[0], "record_id": v[1]} for d, v in fold.vectors.items()])
    changed = _write_alerts(s, fold)
    _write_state(s, fold, memory)
    return changed


def _write_measures(s: Session, fold: _Fold) -> None:
    if not fold.measures:
        return
    table = MeasurementHour.__table__
    stmt = _insert(s, MeasurementHour)
    x = stmt.excluded
    c = table.c
    stmt = stmt.on_conflict_do_update(
        index_elements=[c.hour, c.site_id, c.order_id, c.fixture_id, c.phase, c.name],
        set_={
            "n": c.n + x.n,
            "total": c.total + x.total,
            "total_sq": c.total_sq + x.total_sq,
            "low": _least(s, c.low, x.low),
            "high": _greatest(s, c.high, x.high),
            "mr_total": c.mr_total + x.mr_total,
            "mr_n": c.mr_n + x.mr_n,
            "fails": c.fails + x.fails,
            "lower": x.lower,
            "upper": x.upper,
        },
    )
    rows = [
        {
            "hour": k[0],
            "site_id": k[1],
            "order_id": k[2],
            "fixture_id": k[3],
            "phase": k[4],
            "name": k[5],
            "n": a[0],
            "total": a[1],
            "total_sq": a[2],
            "low": a[3],
            "high": a[4],
            "mr_total": a[5],
            "mr_n": a[6],
            "fails": a[7],
            "lower": a[8],
            "upper": a[9],
        }
        for k, a in fold.measures.items()
    ]
    for chunk in _chunks(rows, 1000):
        s.execute(stmt, list(chunk))


def _least(s: Session, a: Any, b: Any) -> Any:
    return func.min(a, b) if s.get_bind().dialect.name == "sqlite" else func.least(a, b)


def _greatest(s: Session, a: Any, b: Any) -> Any:
    return func.max(a, b) if s.get_bind().dialect.name == "sqlite" else func.greatest(a, b)


def _write_alerts(s: Session, fold: _Fold) -> list[Alert]:
    ids = sorted({h.id for h in fold.hits} | {a.alert_id for a in fold.acks})
    if not ids:
        return []
    rows: dict[str, AlertRow] = {}
    for chunk in _chunks(ids):
        for r in s.execute(select(AlertRow).where(AlertRow.id.in_(chunk))).scalars():
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
    for i in sorted(touched):
        by, up_to = acks.get(i, (None, None))
        row = _alert_row(alerts[i], by, up_to)
        out.append(alert_from_row(AlertRow(**row)))
        _upsert(s, AlertRow, ("id",), [row])
    return out


def _write_state(s: Session, fold: _Fold, memory: _Memory) -> None:
    rows = []
    for key in sorted(fold.changed_state):
        kind, _, rest = key.partition("\x1f")
        if kind == "spike" and rest in memory.rates:
            rows.append({"key": key, "value": json.dumps(memory.rates[rest].to_json(), separators=(",", ":"))})
        elif kind == "drift":
            site, phase, name = rest.split("\x1f", 2)
            chart = memory.charts.get((site, phase, name))
            if chart is not None:
                rows.append({"key": key, "value": chart.to_json()})
        elif kind == "last" and rest in memory.last_values:
            rows.append({"key": key, "value": json.dumps(memory.last_values[rest], separators=(",", ":"))})
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
                cursor = read_cursor(s)
                rows = s.execute(_events_after(cursor, batch)).all()
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
