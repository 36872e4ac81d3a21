"""Anomaly detectors over the event stream. Each is a small pure object: facts in, alerts out.

Detectors work one fact at a time: ``hit(fact)`` (or ``feed(state, fact)`` for the few that need
history) returns the alert *hit* this fact causes, if any, and the alert a user sees is the merge of
its hits (``merge_alerts``), so alerts can be kept incrementally as events arrive. ``detect`` is the
batch form over a list of facts, the same fold.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections import Counter
from collections.abc import Iterable, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from itertools import chain, repeat
from typing import Any, ClassVar, Protocol

from fabguard.analytics.alerts import Alert, Severity, make_alert, merge_all
from fabguard.analytics.drift import MeasurementDrift
from fabguard.analytics.facts import EventFact, MeasuredValue, TestFact
from fabguard.domain.testrecord import StoredMeasurement


class EventDetector(Protocol):
    """A detector that needs nothing but the event in hand."""

    @property
    def kind(self) -> str: ...

    def hit(self, e: EventFact) -> Alert | None: ...

    def detect(self, events: Sequence[EventFact]) -> list[Alert]: ...


def detectors_of_kind(detectors: Sequence[EventDetector], kind: str) -> list[EventDetector]:
    """Those of ``detectors`` that may hit on an event of ``kind``, in order: a detector that names the
    only kinds its ``hit`` looks at (``kinds``) is left out for the others; one that names none is kept."""
    return [d for d in detectors if (kinds := getattr(d, "kinds", None)) is None or kind in kinds]


def _detect(detector: EventDetector, events: Sequence[EventFact]) -> list[Alert]:
    return merge_all(h for e in events if (h := detector.hit(e)) is not None)


def _order_alert(kind: str, severity: Severity, message: str, e: EventFact) -> Alert:
    """A hit about ``e``'s order: the order is the subject; order, site and fixture come from the event."""
    return make_alert(
        kind,
        severity,
        message,
        [e.seq],
        [e.at],
        subject=[e.order_id],
        order_id=e.order_id,
        site_id=e.site_id,
        fixture_id=e.fixture_id,
    )


@dataclass(frozen=True)
class _UnitRefusals:
    """Unit refusals with given codes, one alert per order."""

    kind: str
    codes: frozenset[str]
    severity: Severity
    what: str
    kinds: ClassVar[frozenset[str]] = frozenset({"unit.refused"})  # the only events ``hit`` looks at

    def hit(self, e: EventFact) -> Alert | None:
        if e.kind != "unit.refused" or e.code not in self.codes:
            return None
        order = e.order_id or "(none)"
        message = f"attempts {self.what} on order {order}" + (f"; latest {e.serial}" if e.serial else "")
        return _order_alert(self.kind, self.severity, message, e)

    def detect(self, events: Sequence[EventFact]) -> list[Alert]:
        return _detect(self, events)


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


def wrong_site() -> EventDetector:
    """A fixture of one site provisioning on another site's order: boards built where they were not ordered."""
    return _UnitRefusals("wrong_site", frozenset({"wrong_site"}), Severity.HIGH, "from a fixture of another site")


def closed_order() -> EventDetector:
    """Provisioning on an order that is not open: cancelled or suspended, expired, not yet valid, or unknown."""
    return _UnitRefusals(
        "closed_order",
        frozenset({"order_inactive", "order_expired", "order_not_yet_valid", "order_not_found"}),
        Severity.HIGH,
        "on an order that is not open",
    )


@dataclass(frozen=True)
class LeaseDiscrepancy:
    """A site agent's sync refused: units beyond its lease, a forked, tampered or replayed log."""

    kind: str = "lease_discrepancy"
    kinds: ClassVar[frozenset[str]] = frozenset({"lease.sync_refused"})

    def hit(self, e: EventFact) -> Alert | None:
        if e.kind != "lease.sync_refused":
            return None
        message = f"a site agent's sync on order {e.order_id or '(none)'} was refused: {e.code}"
        return _order_alert(self.kind, Severity.CRITICAL, message, e)

    def detect(self, events: Sequence[EventFact]) -> list[Alert]:
        return _detect(self, events)


_FIXTURE_CODES = {
    "fixture_revoked": (Severity.CRITICAL, "from revoked fixture"),
    "unknown_fixture": (Severity.HIGH, "with an unknown fixture certificate"),
    "unauthorized": (Severity.WARNING, "to fixture routes without a client certificate"),
}


@dataclass(frozen=True)
class UntrustedFixture:
    """Requests refused at fixture authentication: unknown, revoked or missing certificates."""

    kind: str = "untrusted_fixture"
    kinds: ClassVar[frozenset[str]] = frozenset({"request.refused"})

    def hit(self, e: EventFact) -> Alert | None:
        if e.kind != "request.refused" or e.code not in _FIXTURE_CODES:
            return None
        severity, what = _FIXTURE_CODES[e.code]
        who = f" {e.fixture_id}" if e.fixture_id and e.code == "fixture_revoked" else ""
        return make_alert(
            self.kind,
            severity,
            f"requests {what}{who}",
            [e.seq],
            [e.at],
            subject=[e.code, e.fixture_id],
            fixture_id=e.fixture_id,
        )

    def detect(self, events: Sequence[EventFact]) -> list[Alert]:
        return _detect(self, events)


_FIELD_SIGNALS = {
    "two_places": "answered from two places at once",
    "not_issued": "answered with a certificate we never issued",
    "revoked_active": "answered in the field after it was revoked",
}


@dataclass(frozen=True)
class FieldClones:
    """Field checks showing one identity doing what one device cannot (the check's ``clone`` signal,
    decided by ``domain.field.clone_signal``): one alert per serial and signal."""

    kind: str = "field_clone"
    kinds: ClassVar[frozenset[str]] = frozenset({"field.checked"})

    def hit(self, e: EventFact) -> Alert | None:
        if e.kind != "field.checked":
            return None
        signal = e.detail.get("clone")
        if signal not in _FIELD_SIGNALS:
            return None
        serial = e.serial or "(no serial)"
        where = e.detail.get("place")
        other = e.detail.get("other_place")
        places = f" ({other} and {where})" if other else (f" ({where})" if where else "")
        return make_alert(
            self.kind,
            Severity.CRITICAL,
            f"device {serial} {_FIELD_SIGNALS[signal]}{places}",
            [e.seq],
            [e.at],
            subject=[signal, e.serial],
            order_id=e.order_id,
        )

    def detect(self, events: Sequence[EventFact]) -> list[Alert]:
        return _detect(self, events)


@dataclass
class OrderRate:
    """One order's provisioned units per bucket over the spike detector's history (bounded)."""

    first: int | None = None
    counts: dict[int, int] = field(default_factory=dict)
    # (bucket, mean, sigma) of the history before ``bucket``: the history of a bucket does not change
    # while units land in it, so it is computed once per bucket.
    baseline: tuple[int, float, float] | None = None
    # No bucket in ``counts`` is below this (a bound, not kept in JSON): the history is trimmed only
    # when the trimming could remove something, not on every unit.
    floor: int | None = field(default=None, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {"first": self.first, "counts": [[b, n] for b, n in sorted(self.counts.items())]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OrderRate:
        return cls(data.get("first"), {int(b): int(n) for b, n in data.get("counts", [])})


@dataclass(frozen=True)
class ThroughputSpike:
    """Provisioning per order and time bucket: past a rated rate, or ``k`` sigma over the order's own history.

    Buckets are aligned on the epoch, so the same events always fall into the same buckets. The history
    is the ``history`` buckets before the current one (a day of 5-minute buckets), judged once there are
    ``min_history`` of them; sigma is at least one unit per bucket, so a flat history does not alarm on
    a single extra unit. Every unit that lands in a bucket already past the limit is evidence.
    """

    rated_per_hour: float | None = None
    k: float = 4.0
    bucket: timedelta = timedelta(minutes=5)
    min_history: int = 6
    history: int = 288
    kind: str = "throughput_spike"

    def feed(self, rates: MutableMapping[str, OrderRate], e: EventFact) -> Alert | None:
        if e.kind != "unit.provisioned":
            return None
        order = e.order_id or ""
        rate = rates.get(order)
        if rate is None:
            rate = rates[order] = OrderRate()
        width = self.bucket.total_seconds()
        b = math.floor(e.at.timestamp() / width)
        rate.first = b if rate.first is None else min(rate.first, b)
        counts = rate.counts
        counts[b] = n = counts.get(b, 0) + 1
        oldest = b - self.history
        floor = rate.floor if rate.floor is not None else min(counts)
        if floor < oldest:  # some bucket may have left the history: drop what did (all are >= floor)
            if oldest - floor <= len(counts):
                for old in range(floor, oldest):
                    counts.pop(old, None)
            else:
                for old in [x for x in counts if x < oldest]:
                    del counts[old]
            floor = oldest
        rate.floor = min(floor, b)
        per_hour = 3600 / width
        if self.rated_per_hour is not None and n * per_hour > self.rated_per_hour:
            text = f"{n * per_hour:.0f} units/h against a rated {self.rated_per_hour:.0f} units/h"
        else:
            lo = max(rate.first, b - self.history)
            if b - lo < self.min_history:
                return None
            if rate.baseline is None or rate.baseline[0] != b:
                # The counts of the buckets lo..b-1 (0 where none); fsum is exact, so summing each distinct
                # count's square deviation as often as it occurs gives the sum over every bucket.
                past = Counter(map(counts.get, range(lo, b), repeat(0)))
                span = b - lo
                mean = math.fsum(x * k for x, k in past.items()) / span
                squares = chain.from_iterable(repeat((x - mean) ** 2, k) for x, k in past.items())
                spread = math.sqrt(math.fsum(squares) / span)
                rate.baseline = (b, mean, max(spread, 1.0))
            _, mean, sigma = rate.baseline
            if not n > mean + self.k * sigma:
                return None
            text = f"{n * per_hour:.0f} units/h, {(n - mean) / sigma:.1f} sigma over its usual {mean * per_hour:.0f} units/h"
        return _order_alert(self.kind, Severity.WARNING, f"throughput spike on order {e.order_id}: {text}", e)

    def detect(self, events: Sequence[EventFact]) -> list[Alert]:
        rates: dict[str, OrderRate] = {}
        return merge_all(h for e in events if (h := self.feed(rates, e)) is not None)


@dataclass(frozen=True)
class CopiedTestRecords:
    """Identical measurement vectors on different serials: a test record copied instead of measured.

    Real measurements carry noise; equal vectors of ``min_measurements`` or more values do not happen
    by chance. ``seen`` maps a vector's digest to the serial first measured with it.
    """

    min_measurements: int = 3
    kind: str = "copied_test_record"

    def digest(self, record: TestFact) -> str | None:
        """A short digest of the record's measured values, or None when it has too few to judge."""
        return self.vector_digest(record.measurements)

    def vector_digest(self, measurements: Iterable[MeasuredValue]) -> str | None:
        """The digest of the (phase, name, value) of the values measured, in sorted order: blake2b-128 over
        their count and values (little-endian doubles), then their phases joined by a unit separator, a
        record separator and their names likewise (names are printable: this is unambiguous). The same in
        every process and on every machine, so digests stored in ``test_vectors`` stay comparable."""
        return self._digest(sorted([(m.phase, m.name, m.value) for m in measurements if m.value is not None]))

    def rows_digest(self, rows: Iterable[StoredMeasurement]) -> str | None:
        """``vector_digest`` of a stored record's measurement rows (phase, name, outcome, value, lower,
        upper), without a ``MeasuredValue`` each (the projector's path)."""
        return self._digest(sorted([(p, n, v) for p, n, _, v, _, _ in rows if v is not None]))

    def _digest(self, vector: list[tuple[str, str, float]]) -> str | None:
        n = len(vector)
        if n < self.min_measurements:
            return None
        phases, names, values = zip(*vector, strict=True)
        h = hashlib.blake2b(struct.pack(f"<I{n}d", n, *values), digest_size=16)
        h.update(("\x1f".join(phases) + "\x1e" + "\x1f".join(names)).encode())
        return h.hexdigest()

    def feed(self, seen: MutableMapping[str, str], record: TestFact, digest: str | None = None) -> Alert | None:
        digest = digest or self.digest(record)
        if digest is None:
            return None
        original = seen.setdefault(digest, record.serial)
        if original == record.serial:
            return None
        return make_alert(
            self.kind,
            Severity.CRITICAL,
            f"test records copy the measurements of {original}; latest on {record.serial}",
            [record.seq] if record.seq is not None else [],
            [record.at],
            subject=[original],
            site_id=record.site_id,
            fixture_id=record.fixture_id,
        )

    def detect(self, records: Sequence[TestFact]) -> list[Alert]:
        seen: dict[str, str] = {}
        ordered = sorted(records, key=lambda r: r.record_id)
        return merge_all(h for r in ordered if (h := self.feed(seen, r)) is not None)


def default_event_detectors() -> list[EventDetector]:
    return [
        quota_overrun(),
        duplicate_serial(),
        key_reuse(),
        UntrustedFixture(),
        untested_units(),
        wrong_site(),
        closed_order(),
        FieldClones(),
        LeaseDiscrepancy(),
    ]


def detect_all(
    events: Sequence[EventFact],
    records: Sequence[TestFact] = (),
    *,
    detectors: Sequence[EventDetector] | None = None,
    spike: ThroughputSpike | None = None,
    copies: CopiedTestRecords | None = None,
    drift: MeasurementDrift | None = None,
) -> list[Alert]:
    """Every detector over the same facts (the batch form of what the projector does incrementally)."""
    alerts = [a for d in (detectors if detectors is not None else default_event_detectors()) for a in d.detect(events)]
    alerts += (spike or ThroughputSpike()).detect(events)
    return alerts + (copies or CopiedTestRecords()).detect(records) + (drift or MeasurementDrift()).detect(records)
