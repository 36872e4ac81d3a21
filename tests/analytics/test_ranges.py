from datetime import UTC, datetime, timedelta

import pytest

from fabguard.analytics.ranges import MAX_BUCKETS, PRESETS, bucket_for, preset_window, window_problem


@pytest.mark.parametrize(
    ("span", "width"),
    [
        (timedelta(hours=1), timedelta(minutes=1)),
        (timedelta(hours=8), timedelta(minutes=10)),
        (timedelta(days=1), timedelta(minutes=30)),
        (timedelta(days=7), timedelta(hours=3)),
        (timedelta(days=30), timedelta(hours=12)),
        (timedelta(days=365), timedelta(days=7)),
        (timedelta(minutes=5), timedelta(minutes=1)),
    ],
)
def test_each_range_gets_a_bucket_that_keeps_its_chart_readable(span: timedelta, width: timedelta) -> None:
    assert bucket_for(span) == width
    assert span / width <= MAX_BUCKETS


def test_buckets_of_an_hour_or_more_are_whole_hours() -> None:
    for days in range(1, 400, 7):
        width = bucket_for(timedelta(days=days))
        assert width < timedelta(hours=1) or width % timedelta(hours=1) == timedelta(0)


def test_presets_end_now_and_a_bad_window_is_named() -> None:
    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert preset_window("shift", now) == (now - timedelta(hours=8), now)
    assert set(PRESETS) == {"hour", "shift", "day", "week"}
    with pytest.raises(KeyError):
        preset_window("month", now)
    assert window_problem(now, now) == "the window must start before it ends"
    assert window_problem(now - timedelta(days=4000), now) == "a window may span at most ten years"
    assert window_problem(now - timedelta(hours=1), now) is None
