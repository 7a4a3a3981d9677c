"""When each packet leaves a delaying link, and which packets a bursty link loses: the relay's
scheduling, free of sockets and clocks.

A packet sent at ``t`` leaves at ``t + delay + U(-jitter, +jitter)`` (never before ``t``). With
``reorder`` on, packets are independent, so a later one overtakes an earlier one whenever jitter
exceeds the gap between them, as on a real path through several queues. With ``reorder`` off a
packet never leaves before the one ahead of it: jitter then stretches the queue instead, so the
delay distribution shifts up when jitter is large against the packet interval.

Bursty loss (:class:`BurstLoss`, :class:`GilbertElliott`): radio links lose packets in runs, which
nftables' independent drops cannot do. A two-state Markov chain per direction: in the *bad* state
every packet is lost, in the *good* state none (the Gilbert special case of Gilbert–Elliott);
leaving *bad* has probability ``1 / mean_burst`` per packet, so runs of loss are geometric with
that mean, and entering it ``p / (1 - p) / mean_burst``, so the long-run loss rate is ``p``.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field
from typing import Generic, TypeVar

P = TypeVar("P")


@dataclass(frozen=True)
class LinkSettings:
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    reorder: bool = True

    def __post_init__(self) -> None:
        if self.delay_ms < 0 or self.jitter_ms < 0:
            raise ValueError(f"delay and jitter must be >= 0, got {self.delay_ms} ± {self.jitter_ms} ms")

    def to_json(self) -> dict[str, float | bool]:
        return {"delay_ms": self.delay_ms, "jitter_ms": self.jitter_ms, "reorder": self.reorder}

    @classmethod
    def from_json(cls, data: dict[str, float | bool]) -> LinkSettings:
        return cls(float(data.get("delay_ms", 0.0)), float(data.get("jitter_ms", 0.0)), bool(data.get("reorder", True)))


@dataclass(frozen=True)
class BurstLoss:
    """``percent`` of the packets lost in runs of ``mean_burst`` on average (UDP only unless ``tcp``)."""

    percent: float = 0.0
    mean_burst: float = 1.0
    tcp: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.percent < 100 or self.mean_burst < 1:
            raise ValueError(f"burst loss needs 0 <= percent < 100 and mean_burst >= 1, got {self}")
        if self.enter_bad > 1:
            raise ValueError(f"{self.percent} % loss cannot come in runs as short as {self.mean_burst} on average")

    @property
    def leave_bad(self) -> float:
        return 1 / self.mean_burst

    @property
    def enter_bad(self) -> float:
        p = self.percent / 100
        return p / (1 - p) * self.leave_bad

    def to_json(self) -> dict[str, float | bool]:
        return {"percent": self.percent, "mean_burst": self.mean_burst, "tcp": self.tcp}

    @classmethod
    def from_json(cls, data: dict[str, float | bool]) -> BurstLoss:
        return cls(float(data.get("percent", 0.0)), float(data.get("mean_burst", 1.0)), bool(data.get("tcp", False)))


class GilbertElliott:
    """Decides, packet by packet, whether a bursty link loses it."""

    def __init__(self, rng: random.Random, settings: BurstLoss | None = None) -> None:
        self._rng = rng
        self.settings = settings or BurstLoss()
        self.bad = False
        self.dropped = 0
        self.bursts = 0  # runs of loss started

    def drops(self) -> bool:
        settings = self.settings
        if settings.percent <= 0:
            self.bad = False
            return False
        if self.bad:
            self.bad = self._rng.random() >= settings.leave_bad
        elif self._rng.random() < settings.enter_bad:
            self.bad = True
            self.bursts += 1
        if self.bad:
            self.dropped += 1
        return self.bad


@dataclass(order=True)
class _Queued(Generic[P]):
    due: float
    order: int
    packet: P = field(compare=False)


class DelayLine(Generic[P]):
    """Holds packets until they are due; times are seconds on any monotonic clock the caller picks."""

    def __init__(self, rng: random.Random, settings: LinkSettings | None = None) -> None:
        self._rng = rng
        self.settings = settings or LinkSettings()
        self._queue: list[_Queued[P]] = []
        self._count = 0
        self._last_due = float("-inf")
        self.passed = 0
        self.peak_queue = 0

    def push(self, now: float, packet: P) -> float:
        """Accept ``packet`` at ``now``; returns when it will be due."""
        settings = self.settings
        due = now + settings.delay_ms / 1000
        if settings.jitter_ms:
            due += self._rng.uniform(-settings.jitter_ms, settings.jitter_ms) / 1000
        due = max(due, now)
        if not settings.reorder:
            due = max(due, self._last_due)
        self._last_due = max(self._last_due, due)
        self._count += 1
        heapq.heappush(self._queue, _Queued(due, self._count, packet))
        self.peak_queue = max(self.peak_queue, len(self._queue))
        return due

    def pop_due(self, now: float) -> list[P]:
        """Packets whose time has come, in the order they leave."""
        leaving: list[P] = []
        while self._queue and self._queue[0].due <= now:
            leaving.append(heapq.heappop(self._queue).packet)
        self.passed += len(leaving)
        return leaving

    def next_due(self) -> float | None:
        return self._queue[0].due if self._queue else None

    def __len__(self) -> int:
        return len(self._queue)
