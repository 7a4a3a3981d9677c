"""Token buckets: per client IP for the HTTP interface, per call for data-channel events.

Sans-I/O (the clock is passed in). A bucket refills ``rate`` tokens per second up to ``burst``;
each request takes one. Idle buckets are forgotten, so memory stays bounded under churn.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBucket:
    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._bucket = _Bucket(burst, clock())

    def take(self) -> bool:
        bucket, now = self._bucket, self._clock()
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True

    def retry_after(self) -> float:
        return max(0.0, (1 - self._bucket.tokens) / self.rate)

    def is_full(self) -> bool:
        """Refilled to the brim: its owner has been idle long enough to be forgotten."""
        return self._bucket.tokens + (self._clock() - self._bucket.updated) * self.rate >= self.burst


class KeyedRateLimiter:
    """One bucket per key (e.g. client IP), at most ``max_keys`` remembered."""

    def __init__(self, per_minute: float, burst: float, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 100_000) -> None:
        self._rate = per_minute / 60.0
        self._burst = burst
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: dict[str, TokenBucket] = {}

    def take(self, key: str) -> float | None:
        """None if allowed, else the seconds after which a retry would be."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_keys:
                self._forget_idle()
            bucket = self._buckets[key] = TokenBucket(self._rate, self._burst, self._clock)
        return None if bucket.take() else bucket.retry_after()

    def _forget_idle(self) -> None:
        idle = [key for key, bucket in self._buckets.items() if bucket.is_full()]
        for key in idle or list(self._buckets)[: len(self._buckets) // 2]:  # else the oldest half
            del self._buckets[key]
