"""Nelson rules 1-3 on a measurement: each rule fires on what it describes; an in-control line stays quiet.

The classic constants (3 sigma, a run of 9, a trend of 6) are passed explicitly where a test is about
the classic rules; the defaults are tested for what the module docstring promises on a long line.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

from fabguard.analytics import MeasuredValue, MeasurementDrift, Severity, Signal, TestFact, nelson_signals
from fabguard.analytics.alerts import Alert, merge_all
from fabguard.analytics.drift import ChartKey, ChartState

T0 = datetime(2025, 1, 1, 6, 0, tzinfo=UTC)
# The classic chart: the textbook constants, limits fixed by the baseline.
classic = MeasurementDrift(limit=3.0, run=9, trend=6, refine=0)


def classic_signals(points: list[float]) -> list[Signal]:
    """Rules 1-3 with the classic constants against a known chart (centre 0, sigma 1)."""
    return nelson_signals(points, 0.0, 1.0, limit=3.0, run=9, trend=6)


def records(values: list[float], *, site: str = "cm-a", outcome: str = "PASS", start: int = 0) -> list[TestFact]:
    """One passing unit per value of ``p/vcc`` (nominal 3.3), plus a steady ``p/other``."""
    rng = random.Random(7)
    return [
        TestFact(
            start + i,
            f"SN{start + i:06d}",
            "f1",
            outcome,
            T0 + timedelta(minutes=start + i),
            (MeasuredValue("p", "vcc", v, 3.2, 3.4), MeasuredValue("p", "other", rng.gauss(1, 0.01), 0.9, 1.1)),
            seq=10_000 + start + i,
            site_id=site,
        )
        for i, v in enumerate(values)
    ]


def noise(n: int, seed: int, mean: float = 3.3, sigma: float = 0.02) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(mean, sigma) for _ in range(n)]


def line(
    units: int, seed: int, *, measurements: int = 20, shift_at: int | None = None, shift: float = 0.0
) -> list[TestFact]:
    """A line of passing units with ``measurements`` Gaussian values each (measurement m: mean 1 + m,
    sigma 0.01 (m + 1)); from unit ``shift_at`` on every mean is ``shift`` sigmas higher."""
    rng = random.Random(seed)
    out = []
    for i in range(units):
        offset = shift if shift_at is not None and i >= shift_at else 0.0
        values = tuple(
            MeasuredValue("p", f"m{m}", 1.0 + m + 0.01 * (m + 1) * (rng.gauss(0, 1) + offset), None, None)
            for m in range(measurements)
        )
        out.append(TestFact(i, f"SN{i:06d}", "f1", "PASS", T0 + timedelta(seconds=i), values, seq=i, site_id="cm-a"))
    return out


def feed_all(drift: MeasurementDrift, facts: list[TestFact]) -> list[Alert]:
    charts: dict[ChartKey, ChartState] = {}
    return [hit for fact in facts for hit in drift.feed(charts, fact)]


def test_rule_1_is_a_point_beyond_the_limit() -> None:
    assert classic_signals([0.0, 2.9, -2.9, 3.1, -3.5]) == [Signal(3, 1), Signal(4, 1)]
    assert nelson_signals([0.0, 4.9, -4.9, 5.1, -5.5], 0.0, 1.0) == [Signal(3, 1), Signal(4, 1)]  # default: 5 sigma


def test_rule_2_is_a_run_on_one_side() -> None:
    above = [0.5, 0.1, 0.2, 0.4, 0.3, 0.6, 0.2, 0.5, 0.1]
    assert classic_signals(above[:-1]) == []
    assert classic_signals(above) == [Signal(8, 2)]
    # A point on the centre line breaks the run.
    assert classic_signals([*above[:4], 0.0, *above[4:]]) == []
    assert [s.rule for s in classic_signals([-x for x in above] + [-0.2])] == [2, 2]
    # The default run is 21.
    assert nelson_signals(above * 2 + [0.3, 0.4], 0.0, 1.0) == []
    assert nelson_signals(above * 2 + [0.3, 0.4, 0.2], 0.0, 1.0) == [Signal(20, 2)]


def test_rule_3_is_a_steady_trend() -> None:
    assert classic_signals([0.1, -0.2, 0.3, -0.1, 0.2, -0.3]) == []
    assert classic_signals([-1.0, -0.6, -0.1, 0.2, 0.5]) == []
    assert classic_signals([-1.0, -0.6, -0.1, 0.2, 0.5, 0.9]) == [Signal(5, 3)]
    assert classic_signals([1.0, 0.6, 0.1, -0.2, -0.5, -0.9]) == [Signal(5, 3)]
    # A repeated value is not a step: the run starts again.
    assert classic_signals([-1.0, -0.6, -0.6, 0.2, 0.5, 0.9]) == []
    # The default trend is 10 points (below rule 2's run, within rule 1's limit).
    creep = [-2.0 + 0.4 * i for i in range(10)]
    assert nelson_signals(creep[:-1], 0.0, 1.0) == []
    assert nelson_signals(creep, 0.0, 1.0) == [Signal(9, 3)]


def test_a_step_shift_fires_rule_1_and_rule_2_with_the_shifted_units_as_evidence() -> None:
    steady = records(noise(150, 1))
    shifted = records(noise(100, 2, mean=3.33), start=150)  # 1.5 sigma of a unit, 3.4 sigma of a mean of 5
    (alert,) = classic.detect(steady + shifted)
    assert alert.kind == "measurement_drift" and alert.severity is Severity.WARNING
    assert alert.site_id == "cm-a" and alert.fixture_id == "f1"
    assert "p/vcc at cm-a" in alert.message
    assert "rule 1 (a point beyond 3 sigma)" in alert.message
    assert "rule 2 (9 points in a row on one side of the centre line)" in alert.message
    assert set(alert.evidence) <= {r.seq for r in shifted}
    assert alert.count >= 50


def test_the_defaults_catch_the_same_shift_and_name_their_own_constants() -> None:
    steady = records(noise(600, 1))
    shifted = records(noise(200, 2, mean=3.33), start=600)
    (alert,) = MeasurementDrift().detect(steady + shifted)
    assert "p/vcc at cm-a" in alert.message
    assert "rule 2 (21 points in a row on one side of the centre line)" in alert.message
    assert "9 points" not in alert.message
    assert set(alert.evidence) <= {r.seq for r in shifted}
    assert shifted[0].at <= alert.first_at < shifted[150].at  # caught within 150 units


def test_a_slow_trend_fires_rule_3() -> None:
    steady = records(noise(100, 3))
    rng = random.Random(4)
    # Each mean of 5 creeps up by about 1.5 sigma of a mean: a worn probe, a warming oven.
    creeping = records([3.3 + 0.012 * (i // 5) + rng.gauss(0, 0.002) for i in range(30)], start=100)
    (alert,) = classic.detect(steady + creeping)
    assert "rule 3 (6 points steadily increasing or decreasing)" in alert.message
    # The defaults need 10 rising means, which a steady creep of half a sigma of a mean per subgroup gives.
    creeping = records([3.3 + 0.004 * (i // 5) + rng.gauss(0, 0.0005) for i in range(50)], start=100)
    (alert,) = MeasurementDrift().detect(steady + creeping)
    assert "rule 3 (10 points steadily increasing or decreasing)" in alert.message


def test_an_in_control_line_stays_quiet() -> None:
    assert MeasurementDrift().detect(records(noise(300, 5))) == []
    assert classic.detect(records(noise(300, 5))) == []


def test_alerts_on_in_control_lines_with_the_classic_constants_come_at_the_rate_the_rules_promise() -> None:
    """The seeded quiet line above is not luck-picked: over many in-control lines with 10 judged means,
    about 1 - exp(-10 x 1 %) = 9 % raise a (false) drift alert with the classic constants, a little more
    with limits estimated from a 100-unit baseline. That is the price of those rules; the detector adds
    nothing to it."""
    rng = random.Random(12)
    lines = 200
    alarmed = 0
    for _ in range(lines):
        values = [rng.gauss(3.3, 0.02) for _ in range(150)]
        facts = [
            TestFact(i, f"SN{i}", "f1", "PASS", T0, (MeasuredValue("p", "vcc", v, None, None),), seq=i)
            for i, v in enumerate(values)
        ]
        alarmed += bool(classic.detect(facts))
    assert 0.03 < alarmed / lines < 0.2


def test_the_defaults_stay_quiet_on_a_long_in_control_line_where_the_classic_rules_cry_wolf() -> None:
    """200,000 in-control values (10,000 units x 20 measurements, 40,000 judged means): the defaults are
    built for about one false hit per 2,000,000 values; the classic constants give hundreds here."""
    facts = line(10_000, 21)
    assert feed_all(MeasurementDrift(), facts) == []
    assert len(feed_all(classic, facts)) > 200


def test_the_defaults_catch_a_one_sigma_shift_within_about_150_units() -> None:
    """Twenty charts, each shifted by 1 sigma of a unit (2.2 sigma of a mean of 5) after 1,000 units.
    The module docstring's figures (400 charts): median 105 units, 90th percentile 160, so most charts
    raise their first hit within 150 units of the shift, and every one within 400."""
    drift = MeasurementDrift()
    facts = line(1_400, 22, shift_at=1_000, shift=1.0)
    charts: dict[ChartKey, ChartState] = {}
    first: dict[str, int] = {}
    for fact in facts:
        for hit in drift.feed(charts, fact):
            first.setdefault(hit.message.split(" ", 1)[0], fact.record_id - 1_000 + 1)
    assert len(first) == 20
    delays = sorted(first.values())
    assert delays[0] >= 1 and delays[-1] <= 400  # nothing before the shift, nothing missed
    assert delays[9] <= 110
    assert sum(d <= 150 for d in delays) >= 15


def test_the_estimate_keeps_learning_while_in_control_but_a_drift_never_joins_it() -> None:
    """After the 100-unit baseline, quiet subgroups join the estimate a confirmed block of 21 at a time;
    a shift of half a sigma of a unit (a block mean 5 standard errors off) never does."""
    drift = MeasurementDrift()
    facts = line(4_000, 23, shift_at=1_500, shift=0.5)
    charts: dict[ChartKey, ChartState] = {}
    for fact in facts[:1_500]:
        assert drift.feed(charts, fact) == []
    learnt = {key: (chart.count, chart.center) for key, chart in charts.items()}
    for (_, _, name), (count, center) in learnt.items():
        m = int(name[1:])
        assert 800 <= count <= 1_500 - 21 * 5  # the baseline's 100 values, then most of the quiet ones
        assert center is not None and abs(center - (1.0 + m)) < 0.1 * 0.01 * (m + 1)
    hits = [hit for fact in facts[1_500:] for hit in drift.feed(charts, fact)]
    assert len({hit.id for hit in hits}) >= 15  # most of the 20 charts caught it, slowly
    for key, chart in charts.items():
        count, center = learnt[key]
        m = int(key[2][1:])
        # At most the block held and the one being confirmed when the shift came (the held one, from
        # before the shift, may join), and the chart stays where it was.
        assert chart.count - count <= 2 * 21 * 5
        assert center is not None and chart.center is not None
        assert abs(chart.center - center) < 0.05 * 0.01 * (m + 1)
    # The estimate grows to ``refine`` subgroups (a block may overshoot it) and is then fixed.
    small = MeasurementDrift(refine=40)
    charts = {}
    for fact in facts[:1_000]:
        small.feed(charts, fact)
    fixed = {key: chart.to_json() for key, chart in charts.items()}
    for fact in facts[1_000:1_500]:
        small.feed(charts, fact)
    for key, chart in charts.items():
        before = ChartState.from_json(fixed[key])
        assert 40 * 5 <= chart.count < (40 + 21) * 5
        assert chart.held == [0.0, 0.0, 0.0] and chart.block == [0.0, 0.0, 0.0, 0.0]
        assert (chart.count, chart.center, chart.sigma) == (before.count, before.center, before.sigma)


def test_feeding_one_record_at_a_time_through_json_gives_the_same_hits_as_one_feed_and_as_detect() -> None:
    """The projector saves each chart after a batch and may restart between any two records."""
    east = timezone(timedelta(hours=8))
    facts = []
    rng = random.Random(24)
    for i in range(1_300):
        site = "cm-a" if i % 3 else "cm-b"
        shift = 0.02 if i >= 900 and site == "cm-a" else 0.0  # 1 sigma of a unit on cm-a
        outcome = "FAIL" if i % 17 == 0 else "PASS"
        values = (
            MeasuredValue("p", "vcc", rng.gauss(3.3 + shift, 0.02), 3.2, 3.4),
            MeasuredValue("p", "temp", rng.gauss(40.0, 0.5) + (0.01 * (i - 700) if i >= 700 else 0.0), None, None),
            MeasuredValue("p", "empty", None, None, None),
        )
        seq = None if i % 11 == 0 else 5_000 + i
        at = (T0 + timedelta(seconds=37 * i, microseconds=i)).astimezone(east)
        facts.append(TestFact(i, f"SN{i:06d}", f"f{i % 2}", outcome, at, values, seq=seq, site_id=site))
    drift = MeasurementDrift()

    straight = feed_all(drift, facts)
    saved: dict[ChartKey, str] = {}
    stepped = []
    for fact in facts:
        charts = {key: ChartState.from_json(text) for key, text in saved.items()}
        stepped += drift.feed(charts, fact)
        saved = {key: chart.to_json() for key, chart in charts.items()}

    assert len(straight) > 20
    assert {h.message.split(" ", 1)[0] for h in straight} == {"p/vcc", "p/temp"}
    assert stepped == straight
    assert [(h.first_at.isoformat(), h.last_at.isoformat()) for h in stepped] == [
        (h.first_at.isoformat(), h.last_at.isoformat()) for h in straight
    ]
    assert drift.detect(facts) == merge_all(sorted(straight, key=lambda a: a.id))
    # The saved charts are the charts of the uninterrupted feed.
    charts = {}
    for fact in facts:
        drift.feed(charts, fact)
    assert {key: chart.to_json() for key, chart in charts.items()} == saved
    # ... four of them (no chart for a measurement without values); the vcc charts learnt past their baseline.
    assert len(charts) == 4
    assert charts[("cm-a", "p", "vcc")].count > 100 and charts[("cm-b", "p", "vcc")].count > 100


def test_failed_units_and_a_short_history_are_not_judged() -> None:
    line = records(noise(150, 1))
    failed = records([3.9] * 20, outcome="FAIL", start=150)
    assert MeasurementDrift().detect(line + failed) == []
    # Until the baseline is complete there is no chart to judge against.
    assert MeasurementDrift().detect(records(noise(95, 1)) + records([3.5] * 5, start=95)) == []
    assert MeasurementDrift().detect(records(noise(95, 1)) + records([3.5] * 10, start=95)) != []


def test_each_site_has_its_own_chart_and_its_own_alert() -> None:
    a = records(noise(150, 1))
    b = records(noise(150, 1, mean=3.35), site="cm-b", start=1000)  # another process mean: not a drift
    assert MeasurementDrift().detect(a + b) == []
    shifted = records(noise(100, 3, mean=3.39), site="cm-b", start=2000)
    (alert,) = MeasurementDrift().detect(a + b + shifted)
    assert alert.site_id == "cm-b"
    again = MeasurementDrift().detect(a + b + shifted + records(noise(10, 4, mean=3.39), site="cm-b", start=3000))
    assert again[0].id == alert.id


def test_false_alarm_rate_of_an_in_control_process_is_what_the_rules_promise() -> None:
    """With the classic constants rules 1-3 together signal at about 1 % of judged in-control points
    against a known chart; the code adds nothing to that."""
    rng = random.Random(11)
    judged = signals = 0
    for _ in range(400):
        points = [rng.gauss(0, 1) for _ in range(100)]
        judged += len(points)
        signals += len({s.index for s in classic_signals(points)})
    assert 0.005 < signals / judged < 0.015
