"""Token buckets: a burst, then the sustained rate; keys apart; the clock is a parameter."""

from __future__ import annotations

import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from fabguard.domain.ratelimit import EventAllowance, RateLimiter
from tests.hypothesis_profiles import examples


def test_a_burst_then_one_request_per_refill() -> None:
    limiter = RateLimiter(rate=2, burst=3)
    assert [limiter.take("fx-1", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("fx-1", 0.0) == 0.5  # one token comes back every half second
    assert limiter.take("fx-1", 0.5) == 0.0
    assert limiter.take("fx-1", 0.5) > 0


def test_keys_have_their_own_buckets_and_rate_zero_is_no_limit() -> None:
    limiter = RateLimiter(rate=1, burst=1)
    assert limiter.take("fx-1", 0.0) == 0.0 and limiter.take("fx-1", 0.0) > 0
    assert limiter.take("fx-2", 0.0) == 0.0
    unlimited = RateLimiter(rate=0, burst=0)
    assert all(unlimited.take("fx-1", 0.0) == 0.0 for _ in range(1000))


@settings(max_examples=examples(100), derandomize=True)
@given(st.integers(1, 50), st.integers(1, 50), st.lists(st.floats(0, 5), min_size=1, max_size=60))
def test_never_more_than_burst_plus_rate_times_elapsed(rate: int, burst: int, gaps: list[float]) -> None:
    limiter = RateLimiter(rate=rate, burst=burst)
    now, allowed = 0.0, 0
    for gap in gaps:
        now += gap
        allowed += limiter.take("fx", now) == 0.0
    assert allowed <= burst + rate * now + 1e-9


def test_concurrent_takers_share_one_bucket_exactly() -> None:
    limiter = RateLimiter(rate=1e-9, burst=100)  # no refill within the test
    granted: list[bool] = []

    def take() -> None:
        for _ in range(50):
            granted.append(limiter.take("fx", 0.0) == 0.0)

    threads = [threading.Thread(target=take) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(granted) == 100


def test_an_event_allowance_lets_a_burst_through_then_counts_what_it_leaves_out() -> None:
    allowance = EventAllowance(rate=1, burst=3)
    assert [allowance.admit(100.0) for _ in range(5)] == [0, 0, 0, None, None]
    assert allowance.admit(100.5) is None
    assert allowance.admit(101.0) == 3  # the next one written says three were left out
    assert allowance.admit(101.0) is None
    assert allowance.admit(110.0) == 1
