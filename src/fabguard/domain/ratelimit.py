"""Token buckets, one per key (a fixture id): how many requests a caller may make, and how fast.

Pure but for a lock: the clock is a parameter (seconds, monotonic), so tests need no sleeping. A bucket
holds up to ``burst`` tokens, refills at ``rate`` tokens a second, and each request takes one.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass(slots=True)
class TokenBucket:
    rate: float
    burst: float
    tokens: float
    updated: float

    def take(self, now: float) -> float:
        """Take one token; 0.0 if there was one, else the seconds until there will be."""
        self.tokens = min(self.burst, self.tokens + max(now - self.updated, 0.0) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class RateLimiter:
    """A bucket per key, made full on first use; ``rate`` 0 lets everything through."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()  # sync routes' dependencies run on several threads

    def take(self, key: str, now: float) -> float:
        """0.0 if ``key`` may make a request now, else the seconds it must wait."""
        if self.rate <= 0:
            return 0.0
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, self.burst, now)
            return bucket.take(now)


class EventAllowance:
    """How many events of one kind a process writes a second (``rate``, with a ``burst``): refusals of
    callers who name no one, which anyone can provoke as fast as they can send. The others are only
    counted, and the next one written says how many were left out, so the ledger grows with time, not
    with the flood, and still shows that there was one."""

    def __init__(self, rate: float, burst: float) -> None:
        self._bucket = TokenBucket(rate, max(burst, 1.0), max(burst, 1.0), 0.0)
        self._started = False
        self._left_out = 0
        self._lock = threading.Lock()

    def admit(self, now: float) -> int | None:
        """None if this event is to be left out; else how many were left out since the last one written."""
        with self._lock:
            if not self._started:
                self._bucket.updated, self._started = now, True
            if self._bucket.take(now) > 0.0:
                self._left_out += 1
                return None
            left_out, self._left_out = self._left_out, 0
            return left_out


__all__ = ["EventAllowance", "RateLimiter", "TokenBucket"]
