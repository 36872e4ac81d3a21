from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from fabguard.analytics import EventFact, buckets, quota_burndown, refusals_by_reason, throughput_per_hour, unit_yield

T0 = datetime(2025, 1, 1, 8, 0, tzinfo=UTC)


def test_yield_counts_first_pass_final_pass_and_retests_per_unit() -> None:
    stats = unit_yield(
        [("a", "PASS"), ("b", "FAIL"), ("b", "PASS"), ("c", "FAIL"), ("c", "FAIL"), ("d", "PASS"), ("a", "PASS")]
    )
    assert (stats.units, stats.tests, stats.first_pass, stats.final_pass, stats.retested) == (4, 7, 2, 3, 3)
    assert stats.first_pass_yield == pytest.approx(0.5)
    assert stats.final_yield == pytest.approx(0.75)
    assert stats.retest_rate == pytest.approx(0.75)


def test_yield_of_nothing_is_unknown_not_zero() -> None:
    stats = unit_yield([])
    assert stats.first_pass_yield is None and stats.final_yield is None and stats.retest_rate is None


def test_throughput_counts_units_per_hour_inside_the_window() -> None:
    times = [T0 + timedelta(minutes=m) for m in range(0, 120, 10)]
    assert throughput_per_hour(times, since=T0, until=T0 + timedelta(hours=2)) == pytest.approx(6)
    assert throughput_per_hour(times, since=T0 + timedelta(hours=1), until=T0 + timedelta(hours=2)) == pytest.approx(6)
    assert throughput_per_hour(times, since=T0, until=T0) == 0


def test_buckets_cover_the_window_including_empty_ones() -> None:
    times = [T0 + timedelta(minutes=1), T0 + timedelta(minutes=2), T0 + timedelta(minutes=25)]
    got = buckets(times, since=T0, until=T0 + timedelta(minutes=30), width=timedelta(minutes=10))
    assert [b.count for b in got] == [2, 0, 1]
    assert got[1].start == T0 + timedelta(minutes=10)


def test_burndown_projects_exhaustion_at_the_recent_rate() -> None:
    now = T0 + timedelta(hours=1)
    recent = [T0 + timedelta(minutes=m) for m in range(0, 60, 6)]  # 10 units in the last hour
    burn = quota_burndown(100, 40, recent, now=now)
    assert burn.remaining == 60
    assert burn.rate_per_hour == pytest.approx(10, rel=0.01)
    assert burn.projected_exhaustion is not None
    assert abs(burn.projected_exhaustion - (now + timedelta(hours=6))) < timedelta(minutes=1)


def test_burndown_of_an_idle_order_has_no_projection_and_a_spent_one_is_exhausted() -> None:
    assert quota_burndown(10, 3, [], now=T0).projected_exhaustion is None
    assert quota_burndown(10, 10, [T0], now=T0 + timedelta(minutes=5)).projected_exhaustion == T0


def test_refusals_are_counted_by_reason_across_kinds() -> None:
    events = [
        EventFact(1, T0, "unit.refused", code="quota_exhausted"),
        EventFact(2, T0, "unit.refused", code="quota_exhausted"),
        EventFact(3, T0, "request.refused", code="unknown_fixture"),
        EventFact(4, T0, "unit.provisioned"),
        EventFact(5, T0, "test.refused", code="test_record_invalid"),
    ]
    assert refusals_by_reason(events) == {"quota_exhausted": 2, "test_record_invalid": 1, "unknown_fixture": 1}
