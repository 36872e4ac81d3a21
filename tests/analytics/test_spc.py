from __future__ import annotations

import itertools
import json
import math
import random
import statistics
from datetime import UTC, datetime

import pytest

from fabguard.analytics import MeasuredValue, TestFact, capability, capability_from_sums, measurement_capability


def test_capability_of_a_centred_process_matches_the_textbook_formulas() -> None:
    rng = random.Random(7)
    values = [rng.gauss(10.0, 0.1) for _ in range(2000)]
    cap = capability(values, lower=9.4, upper=10.6)
    sigma = statistics.stdev(values)
    assert cap.mean == pytest.approx(statistics.fmean(values))
    assert cap.sigma == pytest.approx(sigma)
    assert cap.ppk == pytest.approx(min(10.6 - cap.mean, cap.mean - 9.4) / (3 * sigma))
    # Independent values: the moving-range estimate agrees with the overall sigma, so Cpk ~ Ppk ~ 2.
    assert cap.cpk == pytest.approx(2.0, rel=0.08)
    assert cap.ppk == pytest.approx(2.0, rel=0.08)


def test_a_drifting_process_has_a_lower_ppk_than_cpk() -> None:
    rng = random.Random(3)
    values = [10.0 + i * 0.002 + rng.gauss(0, 0.05) for i in range(300)]
    cap = capability(values, lower=9.0, upper=11.0)
    assert cap.ppk is not None and cap.cpk is not None
    assert cap.ppk < cap.cpk


def test_one_sided_limits_use_the_side_that_exists_and_no_limits_give_no_index() -> None:
    values = [1.0, 2.0, 3.0, 2.0, 1.0, 2.0]
    upper_only = capability(values, lower=None, upper=8.0)
    assert upper_only.ppk == pytest.approx((8.0 - 11 / 6) / (3 * statistics.stdev(values)))
    assert capability(values, lower=None, upper=None).ppk is None
    assert capability([], lower=0, upper=1).n == 0
    assert capability([5.0], lower=0, upper=10).cpk is None


def test_capability_per_measurement_across_records() -> None:
    at = datetime(2025, 1, 1, tzinfo=UTC)
    records = [
        TestFact(i, f"SN{i}", "f1", "PASS", at, (MeasuredValue("power", "vcc", 3.3 + (i % 3) * 0.01, 3.2, 3.4),))
        for i in range(30)
    ]
    (cap,) = measurement_capability(records)
    assert (cap.phase, cap.name, cap.n, cap.lower, cap.upper) == ("power", "vcc", 30, 3.2, 3.4)
    assert cap.cpk is not None and cap.cpk > 1


def test_capability_from_running_sums_equals_capability_from_the_values() -> None:
    """What rollups keep (count, sum, sum of squares, moving ranges), split anywhere, gives the same figures."""
    rng = random.Random(5)
    values = [1000.0 + rng.gauss(0, 0.3) + i * 0.001 for i in range(500)]  # a large mean tests cancellation
    direct = capability(values, lower=998.5, upper=1001.5, phase="p", name="v")
    halves = [values[:137], values[137:]]
    total = sum(sum(h) for h in halves)
    total_sq = sum(v * v for h in halves for v in h)
    ranges = [abs(b - a) for a, b in itertools.pairwise(values)]
    summed = capability_from_sums(
        phase="p",
        name="v",
        n=len(values),
        total=total,
        total_sq=total_sq,
        mr_total=sum(ranges),
        mr_n=len(ranges),
        lower=998.5,
        upper=1001.5,
    )
    assert summed.n == direct.n and summed.mean == pytest.approx(direct.mean)
    assert summed.sigma == pytest.approx(direct.sigma, rel=1e-6)
    assert summed.cpk == pytest.approx(direct.cpk, rel=1e-9) and summed.ppk == pytest.approx(direct.ppk, rel=1e-6)
    assert (
        capability_from_sums(
            phase="p", name="v", n=0, total=0, total_sq=0, mr_total=0, mr_n=0, lower=None, upper=None
        ).mean
        is None
    )


@pytest.mark.parametrize(
    "values",
    [[1e300, -1e300, 5.0], [1.7e308, 1.7e308], [1e200, 1e200, 1e200 * 3], [5.0, 1e308, -1e308, 4.0]],
)
def test_values_too_large_to_square_give_no_figure_rather_than_an_error(values: list[float]) -> None:
    """A finite value near the float's range (a station reporting 1e300) overflowed the sums of squares and the
    dashboard's distribution answered 500; what cannot be computed is left out (None), every figure given is
    finite (JSON has no inf or NaN)."""
    done = capability(values, lower=0.0, upper=10.0)
    assert done.n == len(values)
    from_sums = capability_from_sums(
        phase="p",
        name="m",
        n=len(values),
        total=math.fsum(values) if math.isfinite(sum(values)) else math.inf,
        total_sq=math.inf,
        mr_total=math.inf,
        mr_n=len(values) - 1,
        lower=0.0,
        upper=10.0,
    )
    for cap in (done, from_sums):
        figures = [cap.mean, cap.sigma, cap.sigma_within, cap.cpk, cap.ppk]
        assert all(f is None or math.isfinite(f) for f in figures), cap
        json.dumps(cap.to_dict(), allow_nan=False)
