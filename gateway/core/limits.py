"""Token buckets: per client for the HTTP interface, per call for data-channel events.

Sans-I/O: every call takes ``now`` (monotonic seconds) from its caller. A bucket refills
``rate`` tokens per second up to ``burst``; each request takes one. Idle buckets are forgotten,
so memory stays bounded under churn.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rate:
    """A token bucket's shape: ``burst`` requests at once, refilled at ``per_minute``."""

    per_minute: float
    burst: float

    @classmethod
    def of(cls, per_minute: float) -> Rate:
        """The gateway's usual shape: a third of a minute's worth at once, and at least 5."""
        return cls(per_minute, max(5.0, float(per_minute // 3)))

    @property
    def per_second(self) -> float:
        return self.per_minute / 60.0


class TokenBucket:
    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._updated = now

    def take(self, now: float) -> bool:
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def retry_after(self) -> float:
        """Seconds until the next token, as of the last :meth:`take`."""
        return max(0.0, (1 - self._tokens) / self.rate)

    def is_full(self, now: float) -> bool:
        """Refilled to the brim: its owner has been idle long enough to be forgotten."""
        return self._tokens + (now - self._updated) * self.rate >= self.burst


class KeyedRateLimiter:
    """One bucket per key (e.g. client address), at most ``max_keys`` remembered."""

    def __init__(self, per_minute: float, burst: float, max_keys: int = 100_000) -> None:
        self._rate = per_minute / 60.0
        self._burst = burst
        self._max_keys = max_keys
        self._buckets: dict[str, TokenBucket] = {}

    def take(self, key: str, now: float) -> float | None:
        """None if allowed, else the seconds after which a retry would be."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_keys:
                self._forget_idle(now)
            bucket = self._buckets[key] = TokenBucket(self._rate, self._burst, now)
        return None if bucket.take(now) else bucket.retry_after()

    def _forget_idle(self, now: float) -> None:
        idle = [key for key, bucket in self._buckets.items() if bucket.is_full(now)]
        for key in idle or list(self._buckets)[: len(self._buckets) // 2]:  # else the oldest half
            del self._buckets[key]
