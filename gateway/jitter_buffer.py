"""Receive-side audio jitter buffer for a listener that is a model, not a loudspeaker.

A speaker needs samples at a steady pace, so its buffer delays every packet; the Realtime
upstream consumes a stream and only needs it complete and in order. So a packet that arrives in
order leaves at once (no added delay on a clean network), and the buffer only waits when a
sequence number is missing: for the missing packet itself (reordering), up to a wait that
follows the reordering actually seen (``min_wait``…``max_wait``, shrinking back when the network
calms). When the wait runs out the frame is rebuilt from the next packet's in-band FEC if that
packet is here, else concealed. If the stream stalls, concealment continues on the frame clock
for a few frames, so a dropped burst reads as a short gap rather than a cut.

Sans-I/O: times are passed in; :meth:`JitterBuffer.deadline` says when to call :meth:`pop` if no
packet arrives first.
"""

from __future__ import annotations

import collections
import enum
from dataclasses import dataclass, field

SEQ_MOD = 1 << 16
FRAME_S = 0.02


class Origin(enum.Enum):
    PACKET = "decoded"
    FEC = "fec"
    CONCEAL = "concealed"


@dataclass(frozen=True, slots=True)
class Release:
    """One frame to produce: decode ``payload`` (PACKET), decode_fec(``payload``) (FEC, payload
    is the *next* packet), or conceal (CONCEAL, no payload)."""

    origin: Origin
    seq: int
    payload: bytes | None
    received_at: float  # arrival of the packet used, or when the gap was noticed


@dataclass
class JitterStats:
    received: int = 0
    duplicate: int = 0
    late: int = 0
    decoded: int = 0
    fec: int = 0
    concealed: int = 0
    delays: collections.deque[float] = field(default_factory=lambda: collections.deque(maxlen=3000))

    @property
    def lost(self) -> int:
        return self.fec + self.concealed

    def delay_percentile(self, q: float) -> float:
        if not self.delays:
            return 0.0
        ordered = sorted(self.delays)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


class JitterBuffer:
    def __init__(self, *, min_wait: float = 0.01, max_wait: float = 0.12, memory_s: float = 5.0,
                 max_stall_frames: int = 5, resync_after: int = 100) -> None:
        self.min_wait = min_wait
        self.max_wait = max_wait
        self.memory_s = memory_s
        self.max_stall_frames = max_stall_frames
        self.resync_after = resync_after
        self.stats = JitterStats()
        self._packets: dict[int, tuple[bytes, float]] = {}
        self._next: int | None = None  # extended sequence number due next
        self._highest: int | None = None
        self._first: int | None = None
        self._gap_since: float | None = None
        self._last_arrival = 0.0
        self._stalled = 0  # frames concealed in a row with nothing newer received
        self._lateness: collections.deque[tuple[float, float]] = collections.deque(maxlen=500)
        self._given_up: dict[int, float] = {}  # sequence numbers rebuilt without their packet → when

    # --- input -------------------------------------------------------------------------------

    def push(self, seq: int, payload: bytes, now: float) -> None:
        ext = self._extend(seq)
        self.stats.received += 1
        if self._next is None:
            self._next = ext
        if self._first is None:
            self._first = ext
        if ext in self._packets:
            self.stats.duplicate += 1
            return
        if ext < self._next:
            gave_up = self._given_up.pop(ext, None)
            if gave_up is None:  # already played from its own packet
                self.stats.duplicate += 1
                return
            self.stats.late += 1  # it did come: waiting this much longer would have saved it
            self._lateness.append((now, now - gave_up + self.wait))
            return
        if ext - self._next > self.resync_after:  # a long outage or a sender restart: start over
            self._packets.clear()
            self._next = ext
            self._gap_since = None
        if self._gap_since is not None and self._highest is not None and ext < self._highest:
            self._lateness.append((now, now - self._gap_since))  # reordered, still in time
        self._packets[ext] = (payload, now)
        self._highest = ext if self._highest is None else max(self._highest, ext)
        self._last_arrival = now
        self._stalled = 0
        if ext > self._next and self._gap_since is None:
            self._gap_since = now

    def _extend(self, seq: int) -> int:
        """16-bit RTP sequence → monotonically extended, wrap-around included."""
        if self._highest is None:
            return seq
        base = self._highest - (self._highest % SEQ_MOD)
        candidates = (base - SEQ_MOD + seq, base + seq, base + SEQ_MOD + seq)
        return min(candidates, key=lambda c: abs(c - self._highest))

    @property
    def packets_sent(self) -> int:
        """How many packets the sender numbered since the stream began (received or not)."""
        return 0 if self._first is None or self._highest is None else self._highest - self._first + 1

    def reset(self) -> None:
        """A new stream (SSRC change): forget sequence state, keep the statistics."""
        self._packets.clear()
        self._next = self._highest = self._gap_since = self._first = None
        self._stalled = 0

    # --- output ------------------------------------------------------------------------------

    @property
    def wait(self) -> float:
        """How long a missing packet is waited for: the worst reordering of the last
        ``memory_s`` seconds (a recognizer prefers 20 ms more delay to a rebuilt word), bounded."""
        while self._lateness and self._lateness[0][0] < self._last_arrival - self.memory_s:
            self._lateness.popleft()
        if not self._lateness:
            return self.min_wait
        worst = max(late for _, late in self._lateness)
        return min(self.max_wait, max(self.min_wait, worst + 0.005))

    def deadline(self) -> float | None:
        if self._next is None:
            return None
        if self._gap_since is not None:
            return self._gap_since + self.wait
        if self._stalled < self.max_stall_frames:
            # A frame is invented only once the one after it is overdue too: had that one
            # arrived, its FEC would have rebuilt this frame instead.
            return self._last_arrival + (self._stalled + 2) * FRAME_S + self.wait
        return None

    def pop(self, now: float) -> list[Release]:
        out: list[Release] = []
        while self._next is not None:
            entry = self._packets.pop(self._next, None)
            if entry is not None:
                payload, arrival = entry
                out.append(Release(Origin.PACKET, self._next, payload, arrival))
                self.stats.decoded += 1
                self.stats.delays.append(now - arrival)
                self._advance()
                continue
            if self._gap_since is not None:
                if now < self._gap_since + self.wait:
                    break
                following = self._packets.get(self._next + 1)
                if following is not None:
                    out.append(Release(Origin.FEC, self._next, following[0], self._gap_since))
                    self.stats.fec += 1
                else:
                    out.append(Release(Origin.CONCEAL, self._next, None, self._gap_since))
                    self.stats.concealed += 1
                self.stats.delays.append(now - self._gap_since)
                self._advance(gave_up=now)
                continue
            deadline = self.deadline()
            if deadline is None or now < deadline:
                break
            out.append(Release(Origin.CONCEAL, self._next, None, now))  # the stream stalled
            self.stats.concealed += 1
            self._stalled += 1
            self._advance(gave_up=now)
        return out

    def _advance(self, gave_up: float | None = None) -> None:
        """Move past the frame just released; ``gave_up`` marks it as rebuilt without its packet."""
        assert self._next is not None
        if gave_up is not None:
            self._given_up[self._next] = gave_up
            while len(self._given_up) > 200:
                del self._given_up[next(iter(self._given_up))]
        self._next += 1
        if not self._packets or self._next in self._packets:
            self._gap_since = None
        elif self._gap_since is None:
            self._gap_since = min(arrival for _, arrival in self._packets.values())
