"""Drift on a measurement: Western Electric / Nelson rules 1-3 on an X-bar chart of passing units.

Values come in production order and are grouped into rational subgroups of ``subgroup`` consecutive
units. The first ``baseline`` subgroups set the chart: the centre line is their grand mean, and sigma
of a subgroup mean is the within sigma (mean moving range / d2, which a trend or a shift barely
inflates) over sqrt(subgroup). Every later subgroup mean is judged once against the chart as it
stands: rule 1, a mean beyond ``limit`` sigmas of a mean from the centre line; rule 2, ``run`` means
in a row on one side of it; rule 3, ``trend`` means in a row steadily increasing or decreasing.

The chart keeps learning while the process stays in control, up to ``refine`` subgroups, then it is
fixed. A drift must never move the chart it is judged against, so judged subgroups join the estimate
only in confirmed blocks of ``max(run, trend)``: a full block whose mean agrees with the centre line
(within 2 standard errors of the block and of the estimate together) is held, and joins once the next
block agrees too; a signal of any rule, or a block that disagrees, drops what is pending. A block's
mean is 10 standard errors off after a 1-sigma (of a unit) shift and 5 after half a sigma, so those
are kept out once the chart's own centre line is good to a few hundredths of a sigma (measured with
bench/drift.py's lines: with half a sigma from unit 600 or 1,000 on, the largest move of 100 charts'
centre lines was 6 % and 12 % of the shift, held blocks from before it included). Only in a chart's
first few hundred units, while its centre line is itself uncertain by about 0.1 sigma, can half a
sigma be partly learnt: from unit 300 on it moved 10 of 100 centre lines by more than a fifth of it
(detection still beats a chart fixed by its baseline there: 500 / 2,470 units against 585 / >3,000).

False alarms. With the classic constants (3 sigma, a run of 9, a trend of 6; Minitab's defaults)
rules 1-3 signal at about 1 % of in-control means against a known chart, and at 1.6 % with the centre
and sigma estimated from a 100-unit baseline: rule 2's rate, p^run + (1 - p)^run with p the share of
means above the centre line, grows fast with the centre's error. On a line with 20 measurements and
100,000 units per order that is thousands of false hits, and a drift alert that re-opens all day.
The defaults (5 sigma, a run of 21, a trend of 10, the chart refined to 1,000 subgroups) bring that
to about one false hit per 100,000 units x 20 measurements (2e-6 of judged means; against a known
chart rule 1 and rule 3 would give some 5.5e-7 each, rule 2 the rest), and still catch a 1-sigma
step in about 105 units (90 % within 160) and a trend of 1 sigma per 100 units in 150 (90 % within
180). Refining matters as much as the constants: the same constants on a chart fixed by its 100-unit
baseline give 19 false hits. (The projector takes ``subgroup`` and ``baseline`` from the analytics
settings, 5 and 20 by default, and these defaults for the rest.)

``bench/drift.py`` on the real ``feed``, subgroups of 5 and a baseline of 20 (the projector's default
settings); false hits per 100,000 units x 20 measurements from 20 in-control lines of that size
(``.venv/bin/python bench/drift.py --seeds 20 --trials 400``), delays in units from the change to the
first hit, median / 90th percentile over 400 charts, the change after 6,000 in-control units:

    limit/run/trend  refine  false hits  0.5 sigma    1 sigma  1.5 sigma  2 sigma  trend 1/100u  trend 1/1000u
    3/9/6 classic         0       6,530   50 / 150    15 / 45     5 / 15    5 / 5      75 / 105       275 / 485
    3/9/6             1,000       3,840   50 / 140    15 / 40     5 / 15    5 / 5      75 / 100       280 / 440
    4.5/18/9          1,000         9.0  360 / 1000   90 / 125    30 / 80  10 / 20     135 / 160       640 / 800
    5/20/10           1,000         1.6  430 / 1350  100 / 150   75 / 100  10 / 35     145 / 175       695 / 865
    5/21/10               0          19  575 / >3000 105 / 180   70 / 105  10 / 55     150 / 180       715 / 935
    5/21/10 defaults  1,000         0.9  525 / 1495  105 / 160   75 / 105  10 / 35     150 / 180       705 / 880
    5/22/10           1,000         1.0  600 / 1805  110 / 165   75 / 110  10 / 35     155 / 180       720 / 905

With the classic constants a hit right after the change is as often a false one, hence their short
delays. A run of 21 is the shortest that meets one false hit per 100,000 x 20 (20 gives 1.6, 22 no
fewer than 21 within the noise of 20 lines, and is slower). With the change after only 300 units
the defaults take 500 / 2,470 units for half a sigma, and about the same as above for the rest.

The chart is kept incrementally (``ChartState``, a few numbers and the current subgroup's seqs and
times per site and measurement), so the projector can judge each unit as it arrives and carry the
chart across batches and restarts; ``MeasurementDrift.detect`` is the same fold over a list of
records. ``feed`` is on the projector's hot path: per value it does arithmetic and appends only
(about 2.5 million values a second on the bench machine); times are converted only for a hit and
when a chart is saved.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from math import sqrt

from fabguard.analytics.alerts import Alert, Severity, make_alert, merge_all
from fabguard.analytics.facts import TestFact
from fabguard.domain.testrecord import StoredMeasurement

PASS = "PASS"
_D2 = 1.128

# The textbook constants of rules 1-3 (Western Electric, Nelson, Minitab's defaults) ...
CLASSIC_LIMIT, CLASSIC_RUN, CLASSIC_TREND = 3.0, 9, 6
# ... and this module's defaults, chosen for high-volume lines (see the module docstring).
LIMIT, RUN, TREND = 5.0, 21, 10
# The estimate grows, while in control, up to this many subgroups; then the chart is fixed.
REFINE = 1000
# Quiet subgroups join the estimate a block of ``max(run, trend)`` at a time, once the block's mean and
# the next block's are each within _AGREE standard errors (of the block and the estimate) of the centre.
_AGREE = 2.0

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

    def judge(self, x: float, center: float, sigma: float, limit: float, run: int, trend: int) -> int:
        """The rules point ``x`` violates, as bits: rule r is bit r - 1."""
        rules = 1 if abs(x - center) > limit * sigma else 0
        s = (x > center) - (x < center)
        self.side_run = self.side_run + 1 if s != 0 and s == self.side else (1 if s != 0 else 0)
        self.side = s
        if self.side_run >= run:
            rules |= 2
        if self.trend_run == 0:
            self.trend_run = 1
        else:
            step = (x > self.previous) - (x < self.previous)
            self.trend_run = self.trend_run + 1 if step != 0 and step == self.trend else (2 if step != 0 else 1)
            self.trend = step
            if self.trend_run >= trend:
                rules |= 4
        self.previous = x
        return rules


def nelson_signals(
    points: Sequence[float], center: float, sigma: float, *, limit: float = LIMIT, run: int = RUN, trend: int = TREND
) -> list[Signal]:
    """Rules 1-3 over ``points`` against a chart (centre, sigma of a point): one signal per point and rule."""
    runs = _Runs()
    out = []
    for i, x in enumerate(points):
        bits = runs.judge(x, center, sigma, limit, run, trend)
        out += [Signal(i, r) for r in (1, 2, 3) if bits & (1 << (r - 1))]
    return out


@dataclass(slots=True)
class ChartState:
    """One chart, kept as values arrive: the estimate's running sums (the baseline, then the in-control
    blocks that joined it), the chart they give, the subgroup being filled, the block of judged
    subgroups being confirmed and the one held, and the runs of rules 2 and 3. Bounded: a subgroup's
    seqs and times, and a few numbers."""

    count: int = 0  # values in the estimate
    total: float = 0.0
    moving: float = 0.0  # sum of their |moving ranges| (count - 1 of them)
    last: float = 0.0  # the latest value, for the next moving range
    center: float | None = None  # set once the baseline is complete
    sigma: float = 0.0  # of a subgroup mean
    rules: int = 0  # bit r-1 set once rule r has fired on this chart
    g_sum: float = 0.0
    g_seqs: list[int] = field(default_factory=list)
    g_times: list[datetime] = field(default_factory=list)
    g_fixtures: set[str] = field(default_factory=set)
    runs: _Runs = field(default_factory=_Runs)
    g_moving: float = 0.0  # sum of the subgroup's |moving ranges|
    block: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0])  # sum, moving, values, subgroups
    held: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # sum, moving, values of the held block

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
                [t.timestamp() for t in self.g_times],
                sorted(self.g_fixtures),
                [r.side, r.side_run, r.trend, r.trend_run, r.previous],
                self.g_moving,
                self.block,
                self.held,
            ],
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> ChartState:
        count, total, moving, last, center, sigma, rules, g_sum, seqs, times, fixtures, runs, *more = json.loads(text)
        g_moving, block, held = more or (0.0, [0.0] * 4, [0.0] * 3)  # saved before the estimate could grow
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
            [datetime.fromtimestamp(float(t), UTC) for t in times],
            set(fixtures),
            _Runs(int(runs[0]), int(runs[1]), int(runs[2]), int(runs[3]), float(runs[4])),
            float(g_moving),
            [float(x) for x in block],
            [float(x) for x in held],
        )


@dataclass(frozen=True)
class MeasurementDrift:
    """One alert per site and measurement whose subgroup means break rule 1, 2 or 3 after the baseline.

    Each site is its own process (its own fixtures and parts), so each gets its own chart. ``limit``,
    ``run`` and ``trend`` are the constants of rules 1, 2 and 3; ``refine`` is how many subgroups the
    chart's estimate may grow to while the process stays in control (``baseline`` or less: a chart
    fixed by the baseline)."""

    subgroup: int = 5
    baseline: int = 20
    limit: float = LIMIT
    run: int = RUN
    trend: int = TREND
    kind: str = "measurement_drift"
    refine: int = REFINE

    def rule_text(self, rule: int) -> str:
        return RULE_TEXT[rule].format(limit=self.limit, run=self.run, trend=self.trend)

    def feed(self, charts: MutableMapping[ChartKey, ChartState], record: TestFact) -> list[Alert]:
        """Add one unit's values to its site's charts; the hits of the subgroups it completes."""
        if record.outcome != PASS:  # failed units are the test gate's business; drift is about passing ones
            return []
        rows = [(m.phase, m.name, "", m.value, None, None) for m in record.measurements]
        return self.feed_rows(charts, record.site_id or "", record.seq, record.at, record.fixture_id, rows)

    def feed_rows(
        self,
        charts: MutableMapping[ChartKey, ChartState],
        site: str,
        seq: int | None,
        at: datetime,
        fixture: str,
        rows: Iterable[StoredMeasurement],
    ) -> list[Alert]:
        """``feed`` of a passing unit given as its stored measurement rows (phase, name, outcome, value,
        lower, upper): the projector's path, without a ``TestFact`` and a ``MeasuredValue`` per value."""
        n = self.subgroup
        hits = []
        # The hot path (the projector feeds every passing unit): plain arithmetic and appends, no
        # conversions; times are converted only for a hit and when the chart is saved.
        for phase, name, _, value, _, _ in rows:
            if value is None:
                continue
            key = (site, phase, name)
            chart = charts.get(key)
            if chart is None:
                chart = charts[key] = ChartState(last=value)
            step = value - chart.last
            if step < 0:
                step = -step
            chart.last = value
            if chart.center is None:
                self._baseline(chart, value, step)
                continue
            chart.g_sum += value
            chart.g_moving += step
            if seq is not None:
                chart.g_seqs.append(seq)
            times = chart.g_times
            times.append(at)
            chart.g_fixtures.add(fixture)
            if len(times) >= n:
                hit = self._judge(key, chart)
                if hit is not None:
                    hits.append(hit)
        return hits

    def detect(self, records: Iterable[TestFact]) -> list[Alert]:
        charts: dict[ChartKey, ChartState] = {}
        hits = [h for r in sorted(records, key=lambda r: r.record_id) for h in self.feed(charts, r)]
        return merge_all(sorted(hits, key=lambda a: a.id))

    def _baseline(self, chart: ChartState, value: float, step: float) -> None:
        chart.count += 1
        chart.total += value
        chart.moving += step  # 0 for the first value
        if chart.count >= self.subgroup * self.baseline:
            self._estimate(chart)

    def _estimate(self, chart: ChartState) -> None:
        chart.center = chart.total / chart.count
        chart.sigma = chart.moving / (chart.count - 1) / _D2 / sqrt(self.subgroup) if chart.count > 1 else 0.0

    def _judge(self, key: ChartKey, chart: ChartState) -> Alert | None:
        """Judge the completed subgroup, then let it join the block being confirmed (or drop the blocks)."""
        center = chart.center
        if center is None:  # only charts past their baseline fill subgroups
            return None
        mean = chart.g_sum / len(chart.g_times)
        hit = None
        if chart.sigma <= 0:  # a constant baseline: nothing to judge against
            pass
        elif rules := chart.runs.judge(mean, center, chart.sigma, self.limit, self.run, self.trend):
            chart.rules |= rules
            chart.block[:] = (0.0, 0.0, 0.0, 0.0)
            chart.held[:] = (0.0, 0.0, 0.0)
            hit = self._alert(key, chart, mean)
        elif chart.count < self.refine * self.subgroup:
            self._learn(chart, center)
        chart.g_sum = chart.g_moving = 0.0
        chart.g_seqs.clear()
        chart.g_times.clear()
        chart.g_fixtures.clear()
        return hit

    def _learn(self, chart: ChartState, center: float) -> None:
        """Add the quiet subgroup to the block; a full block that agrees with the chart is held, and the
        held block joins the estimate once the next one agrees too: a drift has to pass two blocks
        and rules 1-3 all the while before the chart it is judged against moves."""
        block = chart.block
        block[0] += chart.g_sum
        block[1] += chart.g_moving
        block[2] += len(chart.g_times)
        block[3] += 1
        size = block[3]
        if size < max(self.run, self.trend):
            return
        groups = chart.count / self.subgroup
        agrees = abs(block[0] / block[2] - center) <= _AGREE * chart.sigma * sqrt(1 / size + 1 / groups)
        held = chart.held
        if agrees and held[2]:
            chart.total += held[0]
            chart.moving += held[1]
            chart.count += int(held[2])
            self._estimate(chart)
        held[:] = block[:3] if agrees and chart.count < self.refine * self.subgroup else (0.0, 0.0, 0.0)
        block[:] = (0.0, 0.0, 0.0, 0.0)

    def _alert(self, key: ChartKey, chart: ChartState, mean: float) -> Alert:
        site, phase, name = key
        seen = [r for r in (1, 2, 3) if chart.rules & (1 << (r - 1))]
        return make_alert(
            self.kind,
            Severity.WARNING,
            f"{phase}/{name}{f' at {site}' if site else ''} drifts: "
            f"{'; '.join(f'rule {k} ({self.rule_text(k)})' for k in seen)}; "
            f"mean of {len(chart.g_times)} now {mean:.6g} against a centre line of {chart.center:.6g} "
            f"(sigma of a mean {chart.sigma:.3g})",
            chart.g_seqs,
            [t.astimezone(UTC) for t in chart.g_times],
            subject=[site, phase, name],
            site_id=site or None,
            fixture_id=next(iter(chart.g_fixtures)) if len(chart.g_fixtures) == 1 else None,
        )
