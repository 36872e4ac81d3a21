"""Production metrics from values: yield, retests, throughput, quota burn-down, refusals by reason."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from fabguard.analytics import figures
from fabguard.analytics.facts import EventFact

PASS = "PASS"


@dataclass(frozen=True, slots=True)
class YieldStats:
    """Counts over units (distinct serials); the figures are those of ``fabguard.analytics.figures``
    (first-pass and final yield, retest rate, scrap), one definition for every surface."""

    units: int = 0
    tests: int = 0
    first_pass: int = 0
    final_pass: int = 0
    retested: int = 0

    @property
    def first_pass_yield(self) -> float | None:
        return figures.first_pass_yield(self.first_pass, self.units)

    @property
    def final_yield(self) -> float | None:
        return figures.final_yield(self.final_pass, self.units)

    @property
    def retest_rate(self) -> float | None:
        return figures.retest_rate(self.retested, self.units)

    @property
    def scrapped(self) -> int:
        return figures.scrapped(self.final_pass, self.units)

    @property
    def scrap_rate(self) -> float | None:
        return figures.scrap_rate(self.final_pass, self.units)

    def to_dict(self) -> dict[str, object]:
        return {
            "units_tested": self.units,
            "tests": self.tests,
            "first_pass": self.first_pass,
            "final_pass": self.final_pass,
            "retested": self.retested,
            "first_pass_yield": self.first_pass_yield,
            "final_yield": self.final_yield,
            "retest_rate": self.retest_rate,
            "scrapped": self.scrapped,
            "scrap_rate": self.scrap_rate,
        }


def unit_yield(outcomes: Iterable[tuple[str, str]]) -> YieldStats:
    """Yield from ``(serial, outcome)`` pairs in test order (oldest first)."""
    first: dict[str, str] = {}
    last: dict[str, str] = {}
    count: Counter[str] = Counter()
    for serial, outcome in outcomes:
        first.setdefault(serial, outcome)
        last[serial] = outcome
        count[serial] += 1
    return YieldStats(
        units=len(first),
        tests=sum(count.values()),
        first_pass=sum(1 for o in first.values() if o == PASS),
        final_pass=sum(1 for o in last.values() if o == PASS),
        retested=sum(1 for n in count.values() if n > 1),
    )


def throughput_per_hour(times: Sequence[datetime], *, since: datetime, until: datetime) -> float:
    """Units per hour over ``[since, until)`` (``figures.throughput_per_hour``)."""
    hours = (until - since).total_seconds() / 3600
    return figures.throughput_per_hour(sum(1 for t in times if since <= t < until), hours)


@dataclass(frozen=True, slots=True)
class Bucket:
    start: datetime
    count: int


def buckets(times: Iterable[datetime], *, since: datetime, until: datetime, width: timedelta) -> list[Bucket]:
    """Counts per fixed-width bucket covering ``[since, until)``, empty buckets included."""
    if width <= timedelta(0):
        raise ValueError("bucket width must be positive")
    n = max(1, -(-(until - since) // width))
    counts = [0] * n
    for t in times:
        if since <= t < until:
            counts[(t - since) // width] += 1
    return [Bucket(since + i * width, c) for i, c in enumerate(counts)]


@dataclass(frozen=True, slots=True)
class BurnDown:
    quota: int
    used: int
    rate_per_hour: float
    projected_exhaustion: datetime | None

    @property
    def remaining(self) -> int:
        return max(self.quota - self.used, 0)

    def to_dict(self) -> dict[str, object]:
        return {
            "quota": self.quota,
            "used": self.used,
            "remaining": self.remaining,
            "rate_per_hour": self.rate_per_hour,
            "projected_exhaustion": self.projected_exhaustion.isoformat() if self.projected_exhaustion else None,
        }


def quota_burndown(
    quota: int, used: int, recent: Sequence[datetime], *, now: datetime, window: timedelta = timedelta(hours=1)
) -> BurnDown:
    """Remaining quota and, at the rate of the last ``window``, when it runs out (None when idle)."""
    rate = throughput_per_hour(recent, since=now - window, until=now + timedelta(microseconds=1))
    remaining = max(quota - used, 0)
    if remaining == 0:
        exhaustion: datetime | None = max(recent) if recent else now
    elif rate > 0:
        exhaustion = now + timedelta(hours=remaining / rate)
    else:
        exhaustion = None
    return BurnDown(quota, used, rate, exhaustion)


def refusals_by_reason(events: Iterable[EventFact]) -> dict[str, int]:
    """Refusal counts by reason code, across unit, test and request refusals."""
    counts: Counter[str] = Counter(
        e.code or "unknown" for e in events if e.kind in ("unit.refused", "test.refused", "request.refused")
    )
    return dict(sorted(counts.items()))
