"""Production metrics and alerts read from the database: aggregate queries over bounded windows.

Alerts are computed from events on demand (the events are the truth; there is nothing to keep in
step). An acknowledgement is itself an event, ``alert.acknowledged``, so it is in the ledger too; it
covers the evidence seen when it was made, and new evidence re-opens the alert.
"""

from __future__ import annotations

import json
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, case, func, select
from sqlalchemy.orm import Session, aliased

from fabguard.analytics import (
    Acknowledgement,
    Alert,
    CopiedTestRecords,
    EventFact,
    MeasuredValue,
    MeasurementDrift,
    OffHoursActivity,
    TestFact,
    buckets,
    default_event_detectors,
    detect_all,
    measurement_capability,
    ordered,
    parse_working_hours,
    quota_burndown,
    with_acknowledgements,
)
from fabguard.analytics.production import PASS, YieldStats
from fabguard.domain.errors import ConfigurationError, FabGuardError, InvalidRequest, NotFound
from fabguard.domain.testrecord import parse_openhtf_record
from fabguard.service import fixtures, orders
from fabguard.service.instance import Instance
from fabguard.store.db import Database, append_event, event_count
from fabguard.store.models import Event, Fixture, Order, TestRecordRow

ALERT_KINDS = ("unit.refused", "request.refused", "unit.provisioned")
# Read as well only when working hours are configured: test.recorded doubles the events to load.
LINE_KINDS = ("test.recorded", "test.refused")
ACK_KIND = "alert.acknowledged"


@dataclass(frozen=True)
class AnalyticsSettings:
    """How far back analytics looks, and the rates it holds a line to."""

    window: timedelta = timedelta(hours=8)
    bucket: timedelta = timedelta(minutes=10)
    burn_window: timedelta = timedelta(hours=1)
    # Alerts look at the newest this-many events and test records (a primary-key range: cheap).
    alert_events: int = 100_000
    alert_records: int = 2_000
    spc_records: int = 500
    rated_units_per_hour: float | None = None
    # Per site: local working hours and their IANA zone, e.g. {"cm-a": ("06:00", "22:00", "Asia/Shanghai")};
    # line activity outside them raises ``off_hours_activity``. Sites not named here are not judged.
    working_hours: Mapping[str, tuple[str, str, str]] = field(default_factory=dict)
    # Measurement drift: Nelson rules 1-3 on means of this many consecutive passing units, judged
    # against a chart set by the first ``drift_baseline`` such means in the alert window.
    drift_subgroup: int = 5
    drift_baseline: int = 20

    def __post_init__(self) -> None:
        parse_working_hours(self.working_hours)  # a bad time or zone fails here, not at the first alert
        if self.drift_subgroup < 1 or self.drift_baseline < 2:
            raise ValueError("drift_subgroup must be at least 1 and drift_baseline at least 2")


DEFAULT = AnalyticsSettings()
SETTINGS_FILE = "analytics.json"


def load_settings(inst: Instance) -> AnalyticsSettings:
    """The instance's analytics settings: ``<home>/analytics.json`` when present, else the defaults.

    The file is an object with any of ``window_hours``, ``bucket_minutes``, ``rated_units_per_hour``,
    ``working_hours`` (``{"cm-a": ["06:00", "22:00", "Asia/Shanghai"]}``), ``drift_subgroup`` and
    ``drift_baseline``. It is read on every call, so an edit takes effect without a restart; a broken
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
        known |= {"drift_subgroup", "drift_baseline"}
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
        )
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise ConfigurationError(f"{path}: {exc}") from exc


def current_sequence(inst: Instance) -> int:
    with inst.db.read() as s:
        return event_count(s)


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t else None


# Time bounds as id bounds. Rows are only ever appended, and on SQLite (one writer, a new row's id above
# every id stored) a block of ids below the largest id is final; the newest time in each final block
# says which blocks hold no row at or after a bound, so a query on time can also bound the id (the
# primary key) without changing its answer. Kept per database and table; empty blocks hold None.
_BLOCK = 4096
_blocks: weakref.WeakKeyDictionary[Database, dict[str, list[datetime | None]]] = weakref.WeakKeyDictionary()
_blocks_lock = threading.Lock()


def _block_newest(s: Session, db: Database, id_col: Any, at_col: Any) -> list[datetime | None]:
    """The newest time in each final block of ids (None for an empty block); [] when not known."""
    if not db.is_sqlite:
        return []
    table = str(id_col)
    with _blocks_lock:
        known = list(_blocks.setdefault(db, {}).get(table, ()))
    final = (int(s.execute(select(func.coalesce(func.max(id_col), 0))).scalar_one()) + 1) // _BLOCK
    if len(known) < final:
        start = len(known)
        newest: dict[int, datetime] = {}
        for i, at in s.execute(select(id_col, at_col).where(id_col >= start * _BLOCK, id_col < final * _BLOCK)):
            b = i // _BLOCK
            if b not in newest or at > newest[b]:
                newest[b] = at
        known.extend(newest.get(b) for b in range(start, final))
        with _blocks_lock:
            stored = _blocks.setdefault(db, {})
            if len(stored.get(table, ())) < len(known):
                stored[table] = known
    return known


def _id_floor(s: Session, db: Database, id_col: Any, at_col: Any, since: datetime) -> int:
    """An id below which every row of ``id_col``'s table is older than ``since`` (0 when not known)."""
    floor = 0
    for b, at in enumerate(_block_newest(s, db, id_col, at_col)):
        if at is not None and at >= since:
            break
        floor = (b + 1) * _BLOCK
    return floor


def _id_ranges(s: Session, db: Database, id_col: Any, at_col: Any, since: datetime) -> list[tuple[int, int | None]]:
    """Id ranges ``[lo, hi)`` (hi None: open) outside which every row is older than ``since``."""
    ranges: list[tuple[int, int | None]] = []
    newest = _block_newest(s, db, id_col, at_col)
    lo: int | None = None
    for b, at in enumerate(newest):
        if at is not None and at >= since:
            lo = b * _BLOCK if lo is None else lo
        elif lo is not None:
            ranges.append((lo, b * _BLOCK))
            lo = None
    ranges.append((len(newest) * _BLOCK if lo is None else lo, None))
    return ranges


def _times_since(s: Session, db: Database, query: Select[datetime], since: datetime) -> list[datetime]:
    """``query`` (event times, already bounded by ``at >= since``) over only the ids that can match."""
    found: list[datetime] = []
    for lo, hi in _id_ranges(s, db, Event.seq, Event.at, since):
        bounded = query.where(Event.seq >= lo)
        found.extend(s.execute(bounded if hi is None else bounded.where(Event.seq < hi)).scalars())
    return found


def _yield_at(s: Session, db: Database, *, since: datetime, site_id: str | None = None) -> YieldStats:
    """Yield over units first tested since ``since`` (at one site or all), all in SQL."""
    tr = TestRecordRow
    per_unit = select(
        tr.serial, func.min(tr.id).label("first"), func.max(tr.id).label("last"), func.count().label("n")
    ).where(tr.received_at >= since, tr.id >= _id_floor(s, db, tr.id, tr.received_at, since))
    if site_id is not None:
        per_unit = per_unit.join(Fixture, Fixture.id == tr.fixture_id).where(Fixture.site_id == site_id)
    unit = per_unit.group_by(tr.serial).subquery()
    first, last = aliased(tr), aliased(tr)
    row = s.execute(
        select(
            func.count(),
            func.coalesce(func.sum(unit.c.n), 0),
            func.coalesce(func.sum(case((first.outcome == PASS, 1), else_=0)), 0),
            func.coalesce(func.sum(case((last.outcome == PASS, 1), else_=0)), 0),
            func.coalesce(func.sum(case((unit.c.n > 1, 1), else_=0)), 0),
        )
        .select_from(unit)
        .join(first, first.id == unit.c.first)
        .join(last, last.id == unit.c.last)
    ).one()
    return YieldStats(*(int(x) for x in row))


def _series(
    s: Session,
    db: Database,
    *,
    since: datetime,
    until: datetime,
    width: timedelta,
    order_id: str | None,
    site_id: str | None,
    low_seq: int = 0,
) -> list[dict[str, Any]]:
    """Provisioned units and tests (passed/failed) per bucket."""
    provisioned = select(Event.at).where(Event.kind == "unit.provisioned", Event.at >= since)
    if order_id is not None:
        provisioned = provisioned.where(Event.order_id == order_id)
    else:
        provisioned = provisioned.where(Event.seq > low_seq)
    tests = select(TestRecordRow.received_at, TestRecordRow.outcome).where(
        TestRecordRow.received_at >= since,
        TestRecordRow.id >= _id_floor(s, db, TestRecordRow.id, TestRecordRow.received_at, since),
    )
    if site_id is not None:
        tests = tests.join(Fixture, Fixture.id == TestRecordRow.fixture_id).where(Fixture.site_id == site_id)
    test_rows = s.execute(tests).all()
    made = buckets(_times_since(s, db, provisioned, since), since=since, until=until, width=width)
    passed = buckets((t for t, o in test_rows if o == PASS), since=since, until=until, width=width)
    failed = buckets((t for t, o in test_rows if o != PASS), since=since, until=until, width=width)
    return [
        {
            "start": m.start.isoformat(),
            "provisioned": m.count,
            "tests_passed": p.count,
            "tests_failed": f.count,
            "pass_rate": p.count / (p.count + f.count) if p.count + f.count else None,
        }
        for m, p, f in zip(made, passed, failed, strict=True)
    ]


def _burn(
    s: Session, db: Database, order: orders.OrderView, now: datetime, settings: AnalyticsSettings
) -> dict[str, object]:
    since = now - settings.burn_window
    recent = _times_since(
        s,
        db,
        select(Event.at).where(Event.order_id == order.id, Event.kind == "unit.provisioned", Event.at >= since),
        since,
    )
    return quota_burndown(order.quota, order.used, recent, now=now, window=settings.burn_window).to_dict()


def _test_facts(
    s: Session, db: Database, rows: Sequence[tuple[int, str, str, str, datetime]], site_of: Mapping[str, str]
) -> list[TestFact]:
    """Facts of the records ``rows`` (id, serial, fixture, outcome, received), unparseable ones left out."""
    measurements = _measurements_of(s, db, [r[0] for r in rows])
    facts = []
    for rid, serial, fixture_id, outcome, at in rows:
        values = measurements.get(rid)
        if values is not None:
            facts.append(TestFact(rid, serial, fixture_id, outcome, at, values, site_id=site_of.get(fixture_id)))
    return facts


def _sites(s: Session) -> dict[str, str]:
    return dict(s.execute(select(Fixture.id, Fixture.site_id)).all())


def order_stats(inst: Instance, order_id: str, *, settings: AnalyticsSettings | None = None) -> dict[str, Any]:
    """One order: quota burn-down, throughput, refusals, yield and capability at its site."""
    settings = settings or load_settings(inst)
    view = orders.get_order(inst, order_id)
    now = inst.clock()
    since = max(now - settings.window, view.created_at)
    with inst.db.read() as s:
        tested_since = view.created_at
        records = s.execute(
            select(
                TestRecordRow.id,
                TestRecordRow.serial,
                TestRecordRow.fixture_id,
                TestRecordRow.outcome,
                TestRecordRow.received_at,
            )
            .join(Fixture, Fixture.id == TestRecordRow.fixture_id)
            .where(
                Fixture.site_id == view.site_id,
                TestRecordRow.received_at >= tested_since,
                TestRecordRow.id >= _id_floor(s, inst.db, TestRecordRow.id, TestRecordRow.received_at, tested_since),
            )
            .order_by(TestRecordRow.id.desc())
            .limit(settings.spc_records)
        ).all()
        spc = measurement_capability(reversed(_test_facts(s, inst.db, list(records), {})))
        return {
            "order": view.to_dict(),
            "burn_down": _burn(s, inst.db, view, now, settings),
            "yield": _yield_at(s, inst.db, since=tested_since, site_id=view.site_id).to_dict(),
            "refused": view.refused,
            "series": _series(
                s,
                inst.db,
                since=since,
                until=now,
                width=settings.bucket,
                order_id=order_id,
                site_id=view.site_id,
            ),
            "capability": [c.to_dict() for c in spc],
            "as_of": now.isoformat(),
            "sequence": event_count(s),
        }


def overview(inst: Instance, *, settings: AnalyticsSettings | None = None, alerts_limit: int = 50) -> dict[str, Any]:
    """Everything the dashboard shows at once: orders, fixtures, refusals, series, alerts."""
    settings = settings or load_settings(inst)
    now = inst.clock()
    since = now - settings.window
    views = orders.list_orders(inst)
    with inst.db.read() as s:
        seq = event_count(s)
        low = seq - settings.alert_events
        last_seen = dict(
            s.execute(
                select(Event.fixture_id, func.max(Event.at))
                .where(Event.seq > low, Event.fixture_id.is_not(None))
                .group_by(Event.fixture_id)
            ).all()
        )
        refusals: dict[str, dict[str, int]] = {}
        for kind, code, n in s.execute(
            select(Event.kind, Event.code, func.count())
            .where(Event.seq > low, Event.kind.in_(("unit.refused", "test.refused", "request.refused")))
            .group_by(Event.kind, Event.code)
        ):
            refusals.setdefault(kind, {})[code or "unknown"] = int(n)
        provisioned = int(s.execute(select(func.coalesce(func.sum(Order.used), 0))).scalar_one())
        yield_stats = _yield_at(s, inst.db, since=since)
        series = _series(
            s, inst.db, since=since, until=now, width=settings.bucket, order_id=None, site_id=None, low_seq=low
        )
        order_rows = [{**v.to_dict(), "burn_down": _burn(s, inst.db, v, now, settings)} for v in views]
    fixture_rows = [
        {**fixtures.fixture_dict(f), "last_activity": _iso(last_seen.get(f.id) or f.enrolled_at)}
        for f in fixtures.list_fixtures(inst)
    ]
    found = alerts(inst, settings=settings)
    return {
        "as_of": now.isoformat(),
        "sequence": seq,
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


class _LazyDetail(Mapping[str, Any]):
    """An event's JSON detail, parsed on first use (most detectors never look at it)."""

    __slots__ = ("_parsed", "_raw")

    def __init__(self, raw: str) -> None:
        self._raw = raw
        self._parsed: dict[str, Any] | None = None

    def _data(self) -> dict[str, Any]:
        parsed = self._parsed
        if parsed is None:
            parsed = self._parsed = json.loads(self._raw)
        return parsed

    def __getitem__(self, key: str) -> Any:
        return self._data()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data())

    def __len__(self) -> int:
        return len(self._data())

    def __repr__(self) -> str:
        return repr(self._data())


def _acknowledgement(detail_json: str, actor: str | None) -> Acknowledgement:
    detail = json.loads(detail_json)
    up_to = detail.get("up_to_seq")
    return Acknowledgement(str(detail.get("alert_id")), up_to if isinstance(up_to, int) else 0, actor or "unknown")


# Parsed measurements per stored test record (records are never changed once stored), per database.
_MEASUREMENTS_MAX = 20_000
_measurements: weakref.WeakKeyDictionary[Database, OrderedDict[int, tuple[MeasuredValue, ...] | None]] = (
    weakref.WeakKeyDictionary()
)
_measurements_lock = threading.Lock()


def _parse_measurements(record_json: str) -> tuple[MeasuredValue, ...] | None:
    try:
        record = parse_openhtf_record(json.loads(record_json))
    except (FabGuardError, ValueError):
        return None
    return tuple(MeasuredValue(m.phase, m.name, m.value, m.lower, m.upper) for m in record.measurements)


def _measurements_of(s: Session, db: Database, ids: Sequence[int]) -> dict[int, tuple[MeasuredValue, ...] | None]:
    """Measurements of the records ``ids`` (None when unparseable), each record's JSON parsed once."""
    found: dict[int, tuple[MeasuredValue, ...] | None] = {}
    with _measurements_lock:
        memo = _measurements.get(db)
        if memo is None:
            memo = _measurements[db] = OrderedDict()
        for i in ids:
            if i in memo:
                memo.move_to_end(i)
                found[i] = memo[i]
    missing = [i for i in ids if i not in found]
    for start in range(0, len(missing), 500):
        chunk = missing[start : start + 500]
        for rid, raw in s.execute(
            select(TestRecordRow.id, TestRecordRow.record_json).where(TestRecordRow.id.in_(chunk))
        ):
            found[rid] = _parse_measurements(raw)
    if missing:
        with _measurements_lock:
            for i in missing:
                if i in found:
                    memo[i] = found[i]
            while len(memo) > _MEASUREMENTS_MAX:
                memo.popitem(last=False)
    return found


# Alerts per database, event sequence and settings: nothing they read changes without a new event.
_ALERTS_MAX = 8
_alerts_cache: weakref.WeakKeyDictionary[Database, OrderedDict[tuple[int, str], tuple[Alert, ...]]] = (
    weakref.WeakKeyDictionary()
)
_alerts_lock = threading.Lock()


def alerts(inst: Instance, *, settings: AnalyticsSettings | None = None) -> list[Alert]:
    """Every alert over the newest events and test records, acknowledged ones marked, open ones first."""
    settings = settings or load_settings(inst)
    with inst.db.read() as s:
        seq = event_count(s)
        key = (seq, repr(settings))
        with _alerts_lock:
            cache = _alerts_cache.get(inst.db)
            hit = cache.get(key) if cache is not None else None
            if cache is not None and hit is not None:
                cache.move_to_end(key)
        if hit is not None:
            return list(hit)
        found = _compute_alerts(s, inst.db, seq, settings)
    with _alerts_lock:
        cache = _alerts_cache.get(inst.db)
        if cache is None:
            cache = _alerts_cache[inst.db] = OrderedDict()
        cache[key] = tuple(found)
        while len(cache) > _ALERTS_MAX:
            cache.popitem(last=False)
    return found


def _compute_alerts(s: Session, db: Database, seq: int, settings: AnalyticsSettings) -> list[Alert]:
    low = seq - settings.alert_events
    rows = s.execute(
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
        .where(
            Event.seq > low,
            Event.kind.in_((*ALERT_KINDS, *(LINE_KINDS if settings.working_hours else ()), ACK_KIND)),
        )
        .order_by(Event.seq)
    ).all()
    facts: list[EventFact] = []
    acks: list[Acknowledgement] = []
    for e_seq, at, kind, order_id, fixture_id, serial, code, detail, actor in rows:
        if kind == ACK_KIND:
            acks.append(_acknowledgement(detail, actor))
        else:
            facts.append(EventFact(e_seq, at, kind, order_id, fixture_id, serial, code, _LazyDetail(detail)))
    records = list(
        s.execute(
            select(
                TestRecordRow.id,
                TestRecordRow.serial,
                TestRecordRow.fixture_id,
                TestRecordRow.outcome,
                TestRecordRow.received_at,
            )
            .order_by(TestRecordRow.id.desc())
            .limit(settings.alert_records)
        ).all()
    )
    records.reverse()
    sites = _sites(s)
    seq_of: dict[int, int] = {}
    for e_seq, detail in s.execute(
        select(Event.seq, Event.detail).where(
            Event.seq > low, Event.kind == "test.recorded", Event.serial.in_({r[1] for r in records})
        )
    ):
        record_id = json.loads(detail).get("record_id")
        if isinstance(record_id, int):
            seq_of[record_id] = e_seq
    tests = [
        TestFact(
            t.record_id, t.serial, t.fixture_id, t.outcome, t.at, t.measurements, seq_of.get(t.record_id), t.site_id
        )
        for t in _test_facts(s, db, records, sites)
    ]
    detectors = default_event_detectors(rated_per_hour=settings.rated_units_per_hour)
    if settings.working_hours:
        detectors.append(OffHoursActivity(parse_working_hours(settings.working_hours), sites))
    found = detect_all(
        facts,
        tests,
        detectors=detectors,
        copies=CopiedTestRecords(),
        drift=MeasurementDrift(subgroup=settings.drift_subgroup, baseline=settings.drift_baseline),
    )
    return ordered(with_acknowledgements(found, acks))


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
