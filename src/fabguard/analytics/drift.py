"""Drift on a measurement: Western Electric / Nelson rules 1-3 on an X-bar chart of passing units.

Values come in production order and are grouped into rational subgroups of ``subgroup`` consecutive
units. The first ``baseline`` subgroups set the chart: the centre line is their grand mean, and sigma
of a subgroup mean is the within sigma (mean moving range / d2, which a trend or a shift barely
inflates) over sqrt(subgroup). Every later subgroup mean is judged once against that chart.

The chart is kept incrementally (``ChartState``, a few numbers per site and measurement), so the
projector can judge each unit as it arrives and carry the chart across batches and restarts;
``MeasurementDrift.detect`` is the same fold over a list of records.

False alarms are a property of the rules, not of this code: with the classic constants (3 sigma, a
run of 9, a trend of 6) an in-control process signals at about 1 % of judged points. The constants
are parameters, as in common SPC tools, so a high-volume line can trade a little detection delay
for far fewer false alarms (``bench/drift.py`` measures both).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from math import sqrt

from fabguard.analytics.alerts import Alert, Severity, make_alert, merge_all
from fabguard.analytics.facts import TestFact

PASS = "PASS"
_D2 = 1.128

RULE_TEXT = {
    1: "a point beyond {limit:g} sigma",
    2: "{run} points in a row on one side of the centre line",
    3: "{trend} points steadily increasing or decreasing",
}

# (site, phase, measurement name): one chart each.
ChartKey = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class Signal:
    """Rule ``rule`` is violated by the run that ends at point ``index``."""

    index: int
    rule: int


@dataclass(slots=True)
class _Runs:
    """The state rules 2 and 3 carry from one judged point to the next."""

    side: int = 0
    side_run: int = 0
    trend: int = 0
    trend_run: int = 0  # 0 before the first point
    previous: float = 0.0

    def judge(self, x: float, center: float, sigma: float, limit: float, run: int, trend: int) -> list[int]:
        rules = []
        if abs(x - center) > limit * sigma:
            rules.append(1)
        s = (x > center) - (x < center)
        self.side_run = self.side_run + 1 if s != 0 and s == self.side else (1 if s != 0 else 0)
        self.side = s
        if self.side_run >= run:
            rules.append(2)
        if self.trend_run == 0:
            self.trend_run = 1
        else:
            step = (x > self.previous) - (x < self.previous)
            self.trend_run = self.trend_run + 1 if step != 0 and step == self.trend else (2 if step != 0 else 1)
            self.trend = step
            if self.trend_run >= trend:
                rules.append(3)
        self.previous = x
        return rules


def nelson_signals(
    points: Sequence[float], center: float, sigma: float, *, limit: float = 3.0, run: int = 9, trend: int = 6
) -> list[Signal]:
    """Rules 1-3 over ``points`` against a chart (centre, sigma of a point): one signal per point and rule."""
    runs = _Runs()
    return [Signal(i, r) for i, x in enumerate(points) for r in runs.judge(x, center, sigma, limit, run, trend)]


@dataclass(slots=True)
class ChartState:
    """One chart, kept as values arrive: the baseline's running sums, then the fixed chart, the
    subgroup being filled and the runs of rules 2 and 3. Bounded: a subgroup's seqs at most."""

    count: int = 0  # baseline values seen
    total: float = 0.0
    moving: float = 0.0  # sum of |moving ranges| over the baseline
    last: float = 0.0
    center: float | None = None  # set once the baseline is complete
    sigma: float = 0.0  # of a subgroup mean
    rules: int = 0  # bit r-1 set once rule r has fired on this chart
    g_sum: float = 0.0
    g_seqs: list[int] = field(default_factory=list)
    g_times: list[float] = field(default_factory=list)
    g_fixtures: set[str] = field(default_factory=set)
    runs: _Runs = field(default_factory=_Runs)

    def to_json(self) -> str:
        r = self.runs
        return json.dumps(
            [
                self.count,
                self.total,
                self.moving,
                self.last,
                self.center,
                self.sigma,
                self.rules,
                self.g_sum,
                self.g_seqs,
                self.g_times,
                sorted(self.g_fixtures),
                [r.side, r.side_run, r.trend, r.trend_run, r.previous],
            ],
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> ChartState:
        count, total, moving, last, center, sigma, rules, g_sum, seqs, times, fixtures, runs = json.loads(text)
        return cls(
            int(count),
            float(total),
            float(moving),
            float(last),
            None if center is None else float(center),
            float(sigma),
            int(rules),
            float(g_sum),
            [int(x) for x in seqs],
            [float(x) for x in times],
            set(fixtures),
            _Runs(int(runs[0]), int(runs[1]), int(runs[2]), int(runs[3]), float(runs[4])),
        )


@dataclass(frozen=True)
class MeasurementDrift:
    """One alert per site and measurement whose subgroup means break rule 1, 2 or 3 after the baseline.

    Each site is its own process (its own fixtures and parts), so each gets its own chart. ``limit``,
    ``run`` and ``trend`` are the constants of rules 1, 2 and 3."""

    subgroup: int = 5
    baseline: int = 20
    limit: float = 3.0
    run: int = 9
    trend: int = 6
    kind: str = "measurement_drift"

    def rule_text(self, rule: int) -> str:
        return RULE_TEXT[rule].format(limit=self.limit, run=self.run, trend=self.trend)

    def feed(self, charts: MutableMapping[ChartKey, ChartState], record: TestFact) -> list[Alert]:
        """Add one unit's values to its site's charts; the hits of the subgroups it completes."""
        if record.outcome != PASS:  # failed units are the test gate's business; drift is about passing ones
            return []
        site = record.site_id or ""
        hits = []
        for m in record.measurements:
            if m.value is None:
                continue
            key = (site, m.phase, m.name)
            chart = charts.get(key)
            if chart is None:
                chart = charts[key] = ChartState()
            hit = self._add(key, chart, m.value, record)
            if hit is not None:
                hits.append(hit)
        return hits

    def detect(self, records: Iterable[TestFact]) -> list[Alert]:
        charts: dict[ChartKey, ChartState] = {}
        hits = [h for r in sorted(records, key=lambda r: r.record_id) for h in self.feed(charts, r)]
        return merge_all(sorted(hits, key=lambda a: a.id))

    def _add(self, key: ChartKey, chart: ChartState, value: float, record: TestFact) -> Alert | None:
        n = self.subgroup
        if chart.center is None:
            if chart.count:
                chart.moving += abs(value - chart.last)
            chart.count += 1
            chart.total += value
            chart.last = value
            if chart.count == n * self.baseline:
                chart.center = chart.total / chart.count
                chart.sigma = chart.moving / (chart.count - 1) / _D2 / sqrt(n)
            return None
        chart.g_sum += value
        if record.seq is not None:
            chart.g_seqs.append(record.seq)
        chart.g_times.append(record.at.timestamp())
        chart.g_fixtures.add(record.fixture_id)
        if len(chart.g_times) < n:
            return None
        mean = chart.g_sum / n
        seqs, times, fixtures = chart.g_seqs, chart.g_times, chart.g_fixtures
        chart.g_sum, chart.g_seqs, chart.g_times, chart.g_fixtures = 0.0, [], [], set()
        if chart.sigma <= 0:  # a constant baseline: nothing to judge against
            return None
        rules = chart.runs.judge(mean, chart.center, chart.sigma, self.limit, self.run, self.trend)
        if not rules:
            return None
        for r in rules:
            chart.rules |= 1 << (r - 1)
        site, phase, name = key
        seen = [r for r in (1, 2, 3) if chart.rules & (1 << (r - 1))]
        return make_alert(
            self.kind,
            Severity.WARNING,
            f"{phase}/{name}{f' at {site}' if site else ''} drifts: "
            f"{'; '.join(f'rule {k} ({self.rule_text(k)})' for k in seen)}; "
            f"mean of {n} now {mean:.6g} against a centre line of {chart.center:.6g} (sigma of a mean {chart.sigma:.3g})",
            seqs,
            [datetime.fromtimestamp(t, UTC) for t in times],
            subject=[site, phase, name],
            site_id=site or None,
            fixture_id=next(iter(fixtures)) if len(fixtures) == 1 else None,
        )
