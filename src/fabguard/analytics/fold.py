"""The analytics fold: a batch of events (and the test records they name) into rollup rows and alerts.

Pure: the caller reads the batch's events, the records and units they refer to and the vectors seen
before (``fabguard.store.rollups``), and writes what the fold gathered (ADR 0005). Folding events
``1..n`` in batches of any size gives the same rows as folding them at once, given the detector state
(``Memory``) the previous batch left.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from fabguard.analytics.alerts import Acknowledgement, Alert
from fabguard.analytics.detectors import (
    CopiedTestRecords,
    EventDetector,
    OrderRate,
    ThroughputSpike,
    default_event_detectors,
    detectors_of_kind,
)
from fabguard.analytics.drift import ChartKey, ChartState, MeasurementDrift
from fabguard.analytics.facts import EventFact, TestFact, event_fact
from fabguard.analytics.hours import OffHoursActivity, parse_working_hours
from fabguard.analytics.settings import AnalyticsSettings
from fabguard.domain.testrecord import StoredMeasurement, stored_rows

PASS = "PASS"
ACK_KIND = "alert.acknowledged"
COUNTED_KINDS = frozenset(
    {"unit.provisioned", "unit.refused", "request.refused", "test.refused", "test.recorded", "lease.sync_refused"}
)
# Kinds the event detectors see without counting in the production figures: field checks (field clones).
DETECTED_KINDS = frozenset({"field.checked"})

# A measurement's (phase, name): its key among a fixture's last values and an hour's measurement sums.
NameKey = tuple[str, str]
# A unit_tests row: site, order, fixture, first minute, tests, first and last outcome.
UnitRow = tuple[str, str, str, int, int, str, str]
# A stored test record as the fold reads it: serial, fixture, outcome, received at, record JSON.
RecordRow = tuple[str, str, str, datetime, str]
# An event as the fold reads it: seq, at, kind, order, fixture, serial, code, detail JSON, actor.
EventRow = tuple[int, datetime, str, str | None, str | None, str | None, str | None, str, str | None]
# A record's digest with what the copied-record check reports: record id, serial, fixture, outcome, at,
# seq, site.
Copy = tuple[str, int, str, str, str, datetime, int, str]


@dataclass(frozen=True)
class Detectors:
    """The detectors the projector runs, from the instance's analytics settings."""

    events: Sequence[EventDetector]
    spike: ThroughputSpike
    copies: CopiedTestRecords
    drift: MeasurementDrift
    key: str  # settings that change what is raised; a change applies from the next event on

    @classmethod
    def from_settings(cls, settings: AnalyticsSettings, fixture_sites: Mapping[str, str]) -> Detectors:
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


@dataclass
class Memory:
    """Detector state carried between batches; valid only at ``cursor`` (else reloaded from the database)."""

    cursor: int = -1
    rates: dict[str, OrderRate] = field(default_factory=dict)
    charts: dict[ChartKey, ChartState] = field(default_factory=dict)
    last_values: dict[str, dict[NameKey, float]] = field(default_factory=dict)  # fixture -> (phase, name) -> value


@dataclass
class Fold:
    """What one batch adds, gathered in memory and written at once."""

    stats: dict[tuple[int, str, str, str, str, str], int] = field(default_factory=dict)
    # Tuples, not lists, in the two that take a row per unit: the batch keeps them until it is written,
    # and the garbage collector stops tracking tuples of plain values, where thousands of lists would
    # make it rescan the whole heap every batch or so.
    units: dict[str, UnitRow] = field(default_factory=dict)  # serial -> UnitTests columns (changed rows)
    yields: dict[tuple[int, str, str, str], tuple[int, ...]] = field(default_factory=dict)
    failures: dict[tuple[int, str, str, str, str, str], int] = field(default_factory=dict)
    # (hour, site, fixture) -> (phase, name) -> [n, total, total_sq, low, high, mr_total, mr_n, fails, lower, upper, ref]
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

    @property
    def alert_ids(self) -> list[str]:
        """The alerts the batch's hits and acknowledgements name, sorted."""
        return sorted({h.id for h in self.hits} | {a.alert_id for a in self.acks})


@dataclass
class Batch:
    """A folded batch: its ``fold``, the last event's seq, and the records' digests still to check
    against the vectors seen before (``check_copies``)."""

    fold: Fold
    last_seq: int
    copies: list[Copy]

    @property
    def digests(self) -> list[str]:
        """The digests to look up among the vectors already stored, sorted."""
        return sorted({c[0] for c in self.copies})


def wanted(rows: Sequence[EventRow], details: Sequence[Mapping[str, Any]]) -> tuple[list[int], set[str]]:
    """What a batch refers to: the ids of its test records and the serials its units were provisioned as."""
    record_ids: list[int] = []
    provisioned: set[str] = set()
    for row, detail in zip(rows, details, strict=True):
        if row[2] == "test.recorded" and "record_id" in detail:
            record_ids.append(int(detail["record_id"]))
        elif row[2] == "unit.provisioned" and row[5]:
            provisioned.add(row[5])
    return record_ids, provisioned


def loads(text: str) -> Any:
    """``json.loads(text)``, by orjson (three to four times faster on a record) where it can: what orjson
    refuses and the standard library reads (NaN, an integer past 64 bits, a lone surrogate, deep
    nesting) goes through the standard library, so the result is always the standard library's."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def decode_details(rows: Sequence[EventRow]) -> list[dict[str, Any]]:
    return [loads(row[7]) for row in rows]


def _parse(record_json: str) -> tuple[list[tuple[str, str]], list[StoredMeasurement]] | None:
    """A stored record's phases and measurements (it was checked when stored); None if unreadable."""
    try:
        return stored_rows(loads(record_json))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _unit(fold: Fold, known_units: Mapping[str, UnitRow], serial: str) -> UnitRow | None:
    """The unit's row as this batch has it so far: site, order, fixture, first minute, tests, first and last outcome."""
    current = fold.units.get(serial)
    if current is None:
        current = known_units.get(serial)
    return current


def _add_yield(fold: Fold, key: tuple[int, str, str, str], delta: tuple[int, ...], sign: int = 1) -> None:
    totals = fold.yields.get(key)
    if totals is None:
        fold.yields[key] = tuple([sign * d for d in delta])
    else:
        fold.yields[key] = tuple([t + sign * d for t, d in zip(totals, delta, strict=True)])


def _attribute(fold: Fold, known_units: Mapping[str, UnitRow], serial: str, order_id: str) -> None:
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
    fold: Fold,
    memory: Memory,
    detectors: Detectors,
    e: EventFact,
    row: RecordRow,
    known_units: Mapping[str, UnitRow],
    copies: list[Copy],
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
        if v is not None:
            _add_measurement(group, last, (phase, name), v, failed, lower, upper)
    fold.fixtures.add(fixture_id)
    if failing:
        for phase in failing:
            key6 = (minute, site, "", fixture_id, phase[:128], "")
            failures[key6] = failures.get(key6, 0) + 1
    # Detectors on test records, from the stored rows as they are (no value objects per measurement).
    record_id = int(e.detail.get("record_id", 0))
    digest = detectors.copies.rows_digest(measurements)
    if digest is not None:
        copies.append((digest, record_id, serial, fixture_id, outcome, at, e.seq, site))
    if passed:  # drift is about passing units (``MeasurementDrift.feed``)
        hits = detectors.drift.feed_rows(memory.charts, site, e.seq, at, fixture_id, measurements)
        if hits:
            fold.hits.extend(hits)


def _add_measurement(
    group: dict[NameKey, list[Any]],
    last: dict[NameKey, float],
    nk: NameKey,
    v: float,
    failed: bool,
    lower: float | None,
    upper: float | None,
) -> None:
    """Add one measured value to its hour's sums, with its moving range against the fixture's last value."""
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


def fold_events(
    memory: Memory,
    detectors: Detectors,
    rows: Sequence[EventRow],
    details: Sequence[dict[str, Any]],
    records: Mapping[int, RecordRow],
    known_units: Mapping[str, UnitRow],
    sites: Mapping[str, str],
) -> Batch:
    """Fold a batch of event ``rows`` (with their decoded ``details``) into a ``Fold``, updating ``memory``.

    ``records`` holds the test records the batch names (by id), ``known_units`` the stored rows of the
    units it names (by serial), ``sites`` each fixture's site. Each event's ``EventFact`` is made as it
    is folded, so that a batch keeps few objects alive."""
    fold = Fold()
    copies: list[Copy] = []
    last_seq = memory.cursor
    hits = fold.hits
    event_detectors = detectors.events
    by_kind: dict[str, list[EventDetector]] = {}  # the detectors that may hit on each kind (most: none)
    spike, rates = detectors.spike, memory.rates
    for (seq, at, kind, order_id, fixture_id, serial, code, _, actor), detail in zip(rows, details, strict=True):
        e = event_fact(seq, at, kind, order_id, fixture_id, serial, code, detail)
        of_kind = by_kind.get(kind)
        if of_kind is None:
            of_kind = by_kind[kind] = detectors_of_kind(event_detectors, kind)
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
            if kind in DETECTED_KINDS:
                hits.extend(hit for detector in of_kind if (hit := detector.hit(e)) is not None)
            continue
        if kind == "test.recorded":
            code = str(detail.get("outcome", ""))[:40]
        fold.count((minute_of(at), kind, code or "", site, order_id or "", fixture))
        for detector in of_kind:
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
    return Batch(fold, last_seq, copies)


def check_copies(batch: Batch, detector: CopiedTestRecords, seen: dict[str, str]) -> None:
    """The copied-record check of a batch's records, in order, against ``seen`` (digest -> serial: the
    vectors stored before, for ``batch.digests``); the batch's new vectors are added to both."""
    fold = batch.fold
    for digest, record_id, serial, fixture_id, outcome, at, seq, site in batch.copies:
        known = digest in seen
        fact = TestFact(record_id, serial, fixture_id, outcome, at, seq=seq, site_id=site or None)
        hit = detector.feed(seen, fact, digest)
        if not known:
            fold.vectors[digest] = (serial, record_id)
        if hit is not None:
            fold.hits.append(hit)
