"""An entry's time is written as ``strftime("%Y-%m-%dT%H:%M:%S.%fZ")`` in UTC wrote it (the ledger's bytes, and
so its hashes, do not change with how the text is made)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fabguard.ledger.entry import format_time

TIMES = [
    datetime(2026, 12, 7, 16, 0, 0, 0, tzinfo=UTC),
    datetime(2026, 12, 7, 16, 0, 0, 7, tzinfo=UTC),
    datetime(1970, 1, 1, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2031, 3, 1, 1, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))),  # the day before in UTC
    datetime(999, 5, 4, 3, 2, 1, tzinfo=UTC),  # strftime leaves such a year unpadded; so does format_time
]


@pytest.mark.parametrize("at", TIMES, ids=str)
def test_an_entry_time_is_what_strftime_wrote(at: datetime) -> None:
    assert format_time(at) == at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@given(st.datetimes(timezones=st.just(UTC)))
def test_any_time_is_what_strftime_wrote(at: datetime) -> None:
    assert format_time(at) == at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
