"""Drift on a measurement: Western Electric / Nelson rules 1-3 on an X-bar chart of passing units.

Values come in production order and are grouped into rational subgroups of ``subgroup`` consecutive
units. The first ``baseline`` subgroups set the chart: the centre line is their grand mean, and sigma
of a subgroup mean is the within sigma (mean moving range / d2, which a trend or a shift barely
inflates) over sqrt(subgroup). Every later subgroup mean is judged once against that chart.

False alarms are a property of the rules, not of this code: on an in-control process rules 1-3 together
signal at about 1 % of judged points (rule 1: 0.27 %, rule 2: 0.39 %, rule 3: 0.28 %), i.e. one false
signal per ~100 subgroups per measurement. Subgroups make a real drift stand out sqrt(subgroup) times
more clearly without changing that rate.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from fabguard.analytics.alerts import Alert, Severity, make_alert
from fabguard.analytics.facts import TestFact

PASS = "PASS"
_D2 = 1.128

RULE_TEXT = {
    1: "a point beyond 3 sigma",
    2: "9 points in a row on one side of the centre line",
    3: "6 points steadily increasing or decreasing",
}


@dataclass(frozen=True, slots=True)
class Signal:
    """Rule ``rule`` is violated by the run that ends at point ``index``."""

    index: int
    rule: int


def nelson_signals(points: Sequence[float], center: float, sigma: float) -> list[Signal]:
    """Rules 1-3 over ``points`` against a chart (centre, sigma of a point): one signal per point and rule."""
    signals: list[Signal] = []
    side_run = 0
    side = 0
    trend_run = 1
    trend = 0
    for i, x in enumerate(points):
        if abs(x - center) > 3 * sigma:
            signals.append(Signal(i, 1))
        s = (x > center) - (x < center)
        side_run = side_run + 1 if s != 0 and s == side else (1 if s != 0 else 0)
        side = s
        if side_run >= 9:
            signals.append(Signal(i, 2))
        if i > 0:
            step = (x > points[i - 1]) - (x < points[i - 1])
            trend_run = trend_run + 1 if step != 0 and step == trend else (2 if step != 0 else 1)
            trend = step
            if trend_run >= 6:
                signals.append(Signal(i, 3))
    return signals


def _moving_range_sigma(values: Sequence[float]) -> float:
    return math.fsum(abs(b - a) for a, b in itertools.pairwise(values)) / (len(values) - 1) / _D2


@dataclass(frozen=True)
class MeasurementDrift:
    """One alert per site and measurement whose subgroup means break rule 1, 2 or 3 after the baseline.

    Each site is its own process (its own fixtures and parts), so each gets its own chart."""

    subgroup: int = 5
    baseline: int = 20
    kind: str = "measurement_drift"

    def detect(self, records: Sequence[TestFact]) -> list[Alert]:
        series: dict[tuple[str, str, str], list[tuple[float, TestFact]]] = {}
        for r in sorted(records, key=lambda r: r.record_id):
            if r.outcome != PASS:  # failed units are the test gate's business; drift is about passing ones
                continue
            for m in r.measurements:
                if m.value is not None:
                    series.setdefault((r.site_id or "", m.phase, m.name), []).append((m.value, r))
        alerts = []
        for (site, phase, name), points in sorted(series.items()):
            alert = self._judge(site, phase, name, points)
            if alert is not None:
                alerts.append(alert)
        return alerts

    def _judge(self, site: str, phase: str, name: str, points: list[tuple[float, TestFact]]) -> Alert | None:
        n = self.subgroup
        groups = [points[i : i + n] for i in range(0, len(points) - len(points) % n, n)]
        if len(groups) <= self.baseline:
            return None
        base_values = [v for g in groups[: self.baseline] for v, _ in g]
        sigma = _moving_range_sigma(base_values) / math.sqrt(n)
        if sigma <= 0:
            return None
        center = math.fsum(base_values) / len(base_values)
        judged = groups[self.baseline :]
        means = [math.fsum(v for v, _ in g) / n for g in judged]
        signals = nelson_signals(means, center, sigma)
        if not signals:
            return None
        rules = sorted({s.rule for s in signals})
        hit = sorted({s.index for s in signals})
        facts = [r for i in hit for _, r in judged[i]]
        last = means[hit[-1]]
        fixtures = {r.fixture_id for r in facts}
        return make_alert(
            self.kind,
            Severity.WARNING,
            f"{phase}/{name}{f' at {site}' if site else ''} drifts: {'; '.join(f'rule {k} ({RULE_TEXT[k]})' for k in rules)}; "
            f"mean of {n} now {last:.6g} against a centre line of {center:.6g} (sigma of a mean {sigma:.3g})",
            [r.seq for r in facts if r.seq is not None],
            [r.at for r in facts],
            subject=[site, phase, name],
            site_id=site or None,
            fixture_id=fixtures.pop() if len(fixtures) == 1 else None,
        )
