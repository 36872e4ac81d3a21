"""Anomaly detectors over the event stream. Each is a small pure object: facts in, alerts out."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol, TypeVar

from fabguard.analytics.alerts import Alert, Severity, make_alert
from fabguard.analytics.drift import MeasurementDrift
from fabguard.analytics.facts import EventFact, TestFact

K = TypeVar("K")


class EventDetector(Protocol):
    @property
    def kind(self) -> str: ...

    def detect(self, events: Sequence[EventFact]) -> list[Alert]: ...


def _group(
    events: Iterable[EventFact], keep: Callable[[EventFact], bool], key: Callable[[EventFact], K]
) -> dict[K, list[EventFact]]:
    groups: dict[K, list[EventFact]] = {}
    for e in events:
        if keep(e):
            groups.setdefault(key(e), []).append(e)
    return groups


def _site(group: Sequence[EventFact]) -> str | None:
    return next((e.site_id for e in reversed(group) if e.site_id), None)


def _fixture(group: Sequence[EventFact]) -> str | None:
    """The fixture when one fixture did it all; None when several did."""
    fixtures = {e.fixture_id for e in group}
    return fixtures.pop() if len(fixtures) == 1 else None


def _serials(group: Sequence[EventFact], most: int = 3) -> str:
    serials = sorted({e.serial for e in group if e.serial})
    shown = ", ".join(serials[:most])
    return shown + (f" and {len(serials) - most} more" if len(serials) > most else "")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


@dataclass(frozen=True)
class _UnitRefusals:
    """Unit refusals with given codes, one alert per order."""

    kind: str
    codes: frozenset[str]
    severity: Severity
    what: str

    def detect(self, events: Sequence[EventFact]) -> list[Alert]:
        groups = _group(events, lambda e: e.kind == "unit.refused" and e.code in self.codes, lambda e: e.order_id)
        alerts = []
        for order, group in groups.items():
            order_id = order
            serials = _serials(group)
            alerts.append(
                make_alert(
                    self.kind,
                    self.severity,
                    f"{_plural(len(group), 'attempt')} {self.what} on order {order_id or '(none)'}"
                    + (f": {serials}" if serials else ""),
                    [e.seq for e in group],
                    [e.at for e in group],
                    subject=[order_id],
                    order_id=order_id,
                    site_id=_site(group),
                    fixture_id=_fixture(group),
                )
            )
        return alerts


def quota_overrun() -> EventDetector:
    """Provisioning attempts after the order's quota was spent: overproduction."""
    return _UnitRefusals("quota_overrun", frozenset({"quota_exhausted"}), Severity.HIGH, "past the quota")


def duplicate_serial() -> EventDetector:
    """A serial already provisioned comes back with another key: a duplicated board."""
    return _UnitRefusals(
        "duplicate_serial", frozenset({"serial_has_other_key"}), Severity.CRITICAL, "with a serial bound to another key"
    )


def key_reuse() -> EventDetector:
    """A key already bound to one serial offered for another: a cloned device."""
    return _UnitRefusals(
        "key_reused", frozenset({"key_reused"}), Severity.CRITICAL, "with a key of another unit (clone)"
    )


def untested_units() -> EventDetector:
    """Provisioning without a passing test: test skipped, or a failed unit pushed through."""
    return _UnitRefusals(
        "untested_unit", frozenset({"test_missing", "test_failed"}), Severity.HIGH, "without a passing test"
    )


_FIXTURE_CODES = {
    "fixture_revoked": (Severity.CRITICAL, "from revoked fixture"),
    "unknown_fixture": (Severity.HIGH, "with an unknown fixture certificate"),
    "unauthorized": (Severity.WARNING, "to fixture routes without a client certificate"),
}


@dataclass(frozen=True)
class UntrustedFixture:
    """Requests refused at fixture authentication: unknown, revoked or missing certificates."""

    kind: str = "untrusted_fixture"

    def detect(self, events: Sequence[EventFact]) -> list[Alert]:
        groups = _group(
            events,
            lambda e: e.kind == "request.refused" and e.code in _FIXTURE_CODES,
            lambda e: (e.code or "", e.fixture_id),
        )
        alerts = []
        for key, group in groups.items():
            code, fixture_id = key
            severity, what = _FIXTURE_CODES[code]
            who = f" {fixture_id}" if fixture_id and code == "fixture_revoked" else ""
            alerts.append(
                make_alert(
                    self.kind,
                    severity,
                    f"{_plural(len(group), 'request')} {what}{who}",
                    [e.seq for e in group],
                    [e.at for e in group],
                    subject=[code, fixture_id],
                    fixture_id=fixture_id,
                )
            )
        return alerts


@dataclass(frozen=True)
class ThroughputSpike:
    """Provisioning per order and time bucket: past a rated rate, or ``k`` sigma over the order's own history.

    Buckets are aligned on the epoch, so the same events always fall into the same buckets.
    """

    rated_per_hour: float | None = None
    k: float = 4.0
    bucket: timedelta = timedelta(minutes=5)
    min_history: int = 6
    kind: str = "throughput_spike"

    def detect(self, events: Sequence[EventFact]) -> list[Alert]:
        groups = _group(events, lambda e: e.kind == "unit.provisioned", lambda e: e.order_id)
        width = self.bucket.total_seconds()
        per_hour = 3600 / width
        alerts = []
        for order, group in groups.items():
            by_bucket: dict[int, list[EventFact]] = {}
            for e in group:
                by_bucket.setdefault(math.floor(e.at.timestamp() / width), []).append(e)
            first, last = min(by_bucket), max(by_bucket)
            counts = [len(by_bucket.get(i, ())) for i in range(first, last + 1)]
            spikes: list[tuple[int, str]] = []
            # The history's sum as a running total (counts are integers: exact), for the mean in one pass.
            total = 0
            for i, n in enumerate(counts):
                rate = n * per_hour
                if i > 0:
                    total += counts[i - 1]
                    if i > 288:
                        total -= counts[i - 289]
                if self.rated_per_hour is not None and rate > self.rated_per_hour:
                    spikes.append((i, f"{rate:.0f} units/h against a rated {self.rated_per_hour:.0f} units/h"))
                elif i >= self.min_history:
                    lo = max(0, i - 288)
                    # == statistics.fmean of the history (an exact sum, one rounding); fmean raises when empty
                    mean = total / (i - lo) if i > lo else statistics.fmean(counts[lo:i])
                    # sigma is at least 1, so a count at most ``mean + k`` is never a spike: skip the pstdev.
                    if self.k >= 0 and not n > mean + self.k:
                        continue
                    history = counts[lo:i]
                    # A floor of one unit per bucket keeps a flat history from alarming on a single extra unit.
                    sigma = max(statistics.pstdev(history), 1.0)
                    if n > mean + self.k * sigma:
                        spikes.append(
                            (
                                i,
                                f"{rate:.0f} units/h, {(n - mean) / sigma:.1f} sigma over its usual {mean * per_hour:.0f} units/h",
                            )
                        )
            if not spikes:
                continue
            _, peak_text = max(spikes, key=lambda s: counts[s[0]])
            spiking = [e for i, _ in spikes for e in by_bucket[first + i]]
            order_id = order
            alerts.append(
                make_alert(
                    self.kind,
                    Severity.WARNING,
                    f"throughput spike on order {order_id}: {peak_text}",
                    [e.seq for e in spiking],
                    [e.at for e in spiking],
                    subject=[order_id],
                    order_id=order_id,
                    site_id=_site(group),
                    fixture_id=_fixture(spiking),
                )
            )
        return alerts


@dataclass(frozen=True)
class CopiedTestRecords:
    """Identical measurement vectors on different serials: a test record copied instead of measured.

    Real measurements carry noise; equal vectors of ``min_measurements`` or more values do not happen by chance.
    """

    min_measurements: int = 3
    kind: str = "copied_test_record"

    def detect(self, records: Sequence[TestFact]) -> list[Alert]:
        groups: dict[tuple[tuple[str, str, float], ...], list[TestFact]] = {}
        for r in records:
            vector = tuple(sorted((m.phase, m.name, m.value) for m in r.measurements if m.value is not None))
            if len(vector) >= self.min_measurements:
                groups.setdefault(vector, []).append(r)
        alerts = []
        for group in groups.values():
            serials = sorted({r.serial for r in group})
            if len(serials) < 2:
                continue
            group.sort(key=lambda r: r.record_id)
            original = group[0]
            copies = [r for r in group if r.serial != original.serial]
            fixtures = {r.fixture_id for r in copies}
            alerts.append(
                make_alert(
                    self.kind,
                    Severity.CRITICAL,
                    f"{_plural(len(copies), 'test record')} on {', '.join(s for s in serials if s != original.serial)[:200]} "
                    f"copy the measurements of {original.serial}",
                    [r.seq for r in group if r.seq is not None],
                    [r.at for r in group],
                    subject=[original.serial],
                    site_id=next((r.site_id for r in copies if r.site_id), None),
                    fixture_id=fixtures.pop() if len(fixtures) == 1 else None,
                )
            )
        return alerts


def default_event_detectors(*, rated_per_hour: float | None = None) -> list[EventDetector]:
    return [
        quota_overrun(),
        duplicate_serial(),
        key_reuse(),
        UntrustedFixture(),
        untested_units(),
        ThroughputSpike(rated_per_hour=rated_per_hour),
    ]


def detect_all(
    events: Sequence[EventFact],
    records: Sequence[TestFact] = (),
    *,
    detectors: Sequence[EventDetector] | None = None,
    copies: CopiedTestRecords | None = None,
    drift: MeasurementDrift | None = None,
) -> list[Alert]:
    """Every detector over the same facts."""
    alerts = [a for d in (detectors if detectors is not None else default_event_detectors()) for a in d.detect(events)]
    return alerts + (copies or CopiedTestRecords()).detect(records) + (drift or MeasurementDrift()).detect(records)
