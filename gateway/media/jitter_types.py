"""What the jitter buffer hands out and counts: releases, stored packets, statistics, the
windowed maximum its waits follow and the transit spread its stalls wait out (split from
:mod:`gateway.media.jitter_buffer`)."""

from __future__ import annotations

import collections
import enum
from dataclasses import dataclass, field
from typing import NamedTuple

from ..core.audio_format import WEBRTC_RATE
from ..core.stats import percentile


class Origin(enum.Enum):
    PACKET = "decoded"
    FEC = "fec"
    CONCEAL = "concealed"
    RED = "red"  # from a copy a later packet carried (RFC 2198), as good as the packet itself


@dataclass(frozen=True, slots=True)
class Release:
    """One frame to produce: decode ``payload`` (PACKET), rebuild the frame before ``payload``
    from its FEC (FEC), or conceal ``samples`` (CONCEAL, no payload)."""

    origin: Origin
    payload: bytes | None
    samples: int  # duration at 48 kHz (what FEC or concealment must produce)
    received_at: float  # arrival of the packet used; for concealment, when it was decided
    inserted: bool = False  # concealment standing for time, not for a missing sequence number


class StoredPacket(NamedTuple):
    timestamp: int
    payload: bytes
    arrival: float
    redundant: bool = False  # a RED copy, not the packet itself
    resent: bool = False  # came again after a NACK asked for it


@dataclass
class JitterStats:
    """Counters since the stream began (kept across SSRC changes)."""

    received: int = 0  # packets pushed, duplicates and late ones included
    duplicate: int = 0
    late: int = 0  # came after their frame was rebuilt or concealed: unused
    decoded: int = 0
    fec: int = 0  # frames rebuilt from the next packet's in-band FEC
    concealed: int = 0  # frames invented for missing packets
    inserted: int = 0  # frames invented for time without packets (stalls, DTX)
    red: int = 0  # frames rebuilt at full quality from a RED copy in a later packet
    resyncs: int = 0  # the sender's numbering jumped (restart, long outage)
    nacked: int = 0  # lost packets asked for again (RFC 4585 generic NACK)
    resent: int = 0  # frames played from a packet that came again in time after a NACK
    over_budget: int = 0  # frames not released: they would have outrun the wall clock (lying numbering, floods)
    delays: collections.deque[float] = field(default_factory=lambda: collections.deque(maxlen=3000))

    def delay_percentile(self, q: float) -> float:
        """Seconds a received packet was held before its frame left (decoded and FEC frames)."""
        if not self.delays:
            return 0.0
        return percentile(sorted(self.delays), q / 100)


class WindowMax:
    """Maximum of the values seen in the last ``span`` seconds (monotonic deque, O(1))."""

    def __init__(self, span: float) -> None:
        self.span = span
        self._entries: collections.deque[tuple[float, float]] = collections.deque()

    def add(self, now: float, value: float) -> None:
        while self._entries and self._entries[-1][1] <= value:
            self._entries.pop()
        self._entries.append((now, value))

    def get(self, now: float) -> float | None:
        while self._entries and self._entries[0][0] < now - self.span:
            self._entries.popleft()
        return self._entries[0][1] if self._entries else None


class Spread:
    """How much later than the earliest the packets of the last ``span`` seconds arrived, relative to
    their RTP timestamps: the spread of their transit times (jitter, reordering, bunching behind a
    busy event loop), which a stall waits out before it invents audio. Clock drift between the
    sender and us is ~0.1 ms over a 5 s span: no matter."""

    def __init__(self, span: float, rate: int = WEBRTC_RATE) -> None:
        self._rate = rate
        self._slowest = WindowMax(span)
        self._fastest = WindowMax(span)  # of −transit
        self._origin: int | None = None

    def add(self, now: float, timestamp: int) -> None:
        if self._origin is None:
            self._origin = timestamp
        transit = now - self._sent(timestamp)
        self._slowest.add(now, transit)
        self._fastest.add(now, -transit)

    def _sent(self, timestamp: int) -> float:
        """Seconds since the first packet's timestamp (negative before it)."""
        assert self._origin is not None
        ticks = (timestamp - self._origin) % (1 << 32)
        if ticks >= 1 << 31:
            ticks -= 1 << 32
        return ticks / self._rate

    def latest(self, timestamp: int, now: float) -> float | None:
        """When a packet stamped ``timestamp`` should have come by, as late as any lately."""
        slowest = self._slowest.get(now)
        return None if slowest is None or self._origin is None else self._sent(timestamp) + slowest

    def get(self, now: float) -> float:
        slowest, fastest = self._slowest.get(now), self._fastest.get(now)
        return 0.0 if slowest is None or fastest is None else slowest + fastest

    def clear(self) -> None:
        self._origin = None
        self._slowest = WindowMax(self._slowest.span)
        self._fastest = WindowMax(self._fastest.span)
