"""The dashboard's time ranges: the named ones a picker offers and the bucket width that fits a span.

A chart keeps between about 30 and 60 bars whatever its range: an hour in minutes, a shift in
10-minute buckets, a day in half hours, a week in 3-hour buckets, a month in half days. Buckets of an
hour or more are whole hours, so a series over a long range is read from the hour rollups.
"""

from __future__ import annotations

from datetime import datetime, timedelta

# The ranges the picker names, each the span up to now (``order`` and ``custom`` have their own ends).
PRESETS: dict[str, timedelta] = {
    "hour": timedelta(hours=1),
    "shift": timedelta(hours=8),
    "day": timedelta(days=1),
    "week": timedelta(days=7),
}
# Bucket widths, in minutes, from the finest; a span takes the first that keeps it to MAX_BUCKETS bars.
WIDTHS_MINUTES = (1, 5, 10, 15, 30, 60, 180, 360, 720, 1440, 10080, 43200)
MAX_BUCKETS = 60
# The longest span a range may cover (the production stats' bound too).
LONGEST = timedelta(days=3660)


def bucket_for(span: timedelta) -> timedelta:
    """The finest bucket width that shows ``span`` in at most ``MAX_BUCKETS`` bars."""
    minutes = span.total_seconds() / 60
    for width in WIDTHS_MINUTES:
        if minutes / width <= MAX_BUCKETS:
            return timedelta(minutes=width)
    return timedelta(minutes=WIDTHS_MINUTES[-1])


def preset_window(name: str, now: datetime) -> tuple[datetime, datetime]:
    """``[now - span, now)`` of a named range; KeyError for a name the picker does not offer."""
    return now - PRESETS[name], now


def window_problem(since: datetime, until: datetime) -> str | None:
    """What is wrong with a window, or None: it must start before it ends and span at most ten years."""
    if since >= until:
        return "the window must start before it ends"
    if until - since > LONGEST:
        return "a window may span at most ten years"
    return None
