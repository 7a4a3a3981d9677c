"""Which lost mic packets to ask for again, and how long a gap is worth waiting for its resend.

A sender without in-band FEC (aiortc's encoder, FEC-less softphones) loses a whole 20 ms frame
per lost packet, and concealment makes about one word in nine wrong for the recogniser at 10 %
loss. aiortc's RTCRtpSender keeps its last 128 RTP packets and resends any of them on a generic
NACK (RFC 4585 §6.2.1), audio included, and Chromium's does once the answer has NACK: where the
offer says ``a=rtcp-fb:<opus> nack``, or comes from libwebrtc (``MIC_NACK_BROWSERS``), the gateway
answers it and asks — with RED, only for the frames no copy brought back (runs of losses).
:class:`NackPolicy` is the sans-I/O part the jitter buffer consults:

- **Ask once, when the gap is older than reordering**: a packet newer than the highest one seen
  reveals the run it skipped; each missing sequence number is asked for once, as soon as the gap
  is older than the reordering seen lately (:meth:`guard`: how long after a later packet an
  overtaken one still came, over ``memory_s``, plus ``margin``, at most ``max_guard``): with
  ± 20 ms of jitter about half the gaps are packets overtaken by the next one, and asking for
  those makes the sender send them twice. Reordering is seen where a missing packet comes
  before it was asked for — within the guard, so the guard grows with it; and while it is 0,
  one missing packet in ``PROBE_EVERY`` waits ``PROBE_S`` anyway so that reordering can show (an
  overtaken packet that was asked for looks like its resend: SRTP's replay check drops the real
  resend that would tell them apart). A packet asked for that does come twice came the first
  time by itself. The guard costs the resend that much of its head start; without reordering
  (± 5 ms of jitter) it is 0 bar the probes: ask at once. A gap whose request still waits out
  its guard is held as if asked then. Runs longer than ``max_run`` are an outage,
  not loss: not asked for.
- **Wait while it pays**: the resend's delay is learnt from the resends themselves (when asked →
  when it came, late ones included; the last ``samples`` of them within ``memory_s``), so no RTCP
  round-trip estimate is needed. A gap whose packet was asked for is held until the time by which
  nine resends in ten have come, plus ``margin`` — never past ``max_wait`` after the gap opened,
  which is what bounds the delay the frames behind it pay; and not at all when the typical
  (median) resend comes after that bound: the frames behind would pay the wait for little.
  Until a first resend has come (or after ``give_up_after`` requests in a row went unanswered:
  the sender does not answer), nothing waits: the gap is rebuilt or concealed on the buffer's
  usual timing, and asking goes on (it costs 16 bytes).
"""

from __future__ import annotations

import collections
from collections.abc import Container

from ..core.stats import percentile
from .jitter_types import WindowMax

SEQ_MOD = 1 << 16
MAX_DUE = 64
MAX_CAME = 64  # resends remembered, to tell a reordered packet by its duplicate
PROBE_EVERY = 8  # one missing packet in this many waits at least PROBE_S: reordering shows itself there
PROBE_S = 0.02


class NackPolicy:
    def __init__(self, *, max_wait: float = 0.08, margin: float = 0.01, memory_s: float = 10.0, samples: int = 32,
                 max_run: int = 8, give_up_after: int = 10, expire_s: float = 1.0, max_guard: float = 0.03) -> None:
        """``max_guard``: the longest a gap waits for reordering before it is asked for (0: ask at once)."""
        self.max_wait = max_wait
        self.max_guard = max_guard
        self.margin = margin
        self.max_run = max_run
        self.give_up_after = give_up_after
        self.expire_s = expire_s
        self.requested = 0  # sequence numbers asked for
        self.answered = 0  # of those, came again (in time or not)
        self.memory_s = memory_s
        self._repairs: collections.deque[tuple[float, float]] = collections.deque(maxlen=samples)  # (when, delay)
        self._asked: collections.OrderedDict[int, tuple[float, float]] = collections.OrderedDict()  # → (asked, opened)
        self._due: dict[int, tuple[float, bool]] = {}  # ext seq → (when its gap opened, a probe), not asked yet
        self._gaps = 0  # missing packets seen (every PROBE_EVERY-th is a probe)
        self._came: collections.OrderedDict[int, tuple[float, float]] = collections.OrderedDict()  # asked, came → (opened, came)
        self._reorder = WindowMax(memory_s)  # how long after a later packet an overtaken one came
        self._unanswered = 0  # requests in a row that expired unanswered
        self._answering = False  # a resend has come since the last run of unanswered requests

    def missing(self, first: int, last: int, have: Container[int] = (), now: float = 0.0) -> None:
        """Packets ``first``…``last`` (extended sequence numbers) were skipped by a newer one that
        arrived at ``now``; ``have``: those of them already here (RED copies)."""
        if 0 < last - first + 1 <= self.max_run:
            for ext in range(first, last + 1):
                if ext not in self._asked and ext not in have and ext not in self._due:
                    self._gaps += 1
                    self._due[ext] = (now, self._gaps % PROBE_EVERY == 0)
            while len(self._due) > MAX_DUE:  # nobody takes them (no RTCP path): keep the newest
                del self._due[next(iter(self._due))]

    def filled(self, ext: int) -> None:
        """``ext`` is no longer missing (a RED copy or a reordered packet came first): don't ask."""
        self._due.pop(ext, None)

    def guard(self, now: float) -> float:
        """How long a gap waits for reordering before it is asked for (0: no reordering seen)."""
        seen = self._reorder.get(now)
        return 0.0 if seen is None else min(self.max_guard, seen + self.margin)

    def _wait_out(self, probe: bool, guard: float) -> float:
        return min(self.max_guard, max(guard, PROBE_S)) if probe else guard

    def take_due(self, now: float) -> list[int]:
        """The 16-bit sequence numbers to ask for now (each is asked for once): those missing
        for :meth:`guard` or longer."""
        self._expire(now)
        guard = self.guard(now)
        due = [ext for ext, (opened, probe) in self._due.items()
               if now - opened >= self._wait_out(probe, guard) - 1e-9]
        for ext in due:
            self._asked[ext] = (now, self._due.pop(ext)[0])
        self.requested += len(due)
        return [ext % SEQ_MOD for ext in due]

    def next_due(self, now: float) -> float | None:
        """When the next request waiting out the guard is due, if after ``now``."""
        guard = self.guard(now)
        times = [t for opened, probe in self._due.values()
                 if (t := opened + self._wait_out(probe, guard)) > now + 1e-9]
        return min(times) if times else None

    def arrived(self, ext: int, now: float) -> bool:
        """A packet arrived: whether it is one that was asked for (a resend, or a reordered packet
        that came after the request: either way the wait for it paid)."""
        waiting = self._due.pop(ext, None)
        if waiting is not None:  # overtaken, and came before it was asked for
            self._reorder.add(now, now - waiting[0])
            return False
        request = self._asked.pop(ext, None)
        if request is None:
            came = self._came.pop(ext, None)
            if came is not None:  # asked for, and here again: the first one came by itself
                self._reorder.add(now, came[1] - came[0])
            return False
        asked, opened = request
        self._came[ext] = (opened, now)
        while len(self._came) > MAX_CAME:
            del self._came[next(iter(self._came))]
        self.answered += 1
        self._repairs.append((now, now - asked))
        self._unanswered = 0
        self._answering = True
        return True

    def hold_until(self, ext: int, gap_start: float, now: float) -> float | None:
        """Until when the gap at ``ext``, open since ``gap_start``, is worth waiting for (None: not
        asked for, nor to be once the guard has passed, or the sender does not answer)."""
        request = self._asked.get(ext)
        asked = request[0] if request is not None else None
        if asked is None and ext in self._due:
            opened, probe = self._due[ext]
            asked = opened + self._wait_out(probe, self.guard(now))
        while self._repairs and self._repairs[0][0] < now - self.memory_s:
            self._repairs.popleft()
        if asked is None or not self._repairs or not self._answering:
            return None
        delays = sorted(delay for _, delay in self._repairs)
        limit = gap_start + self.max_wait
        if asked + percentile(delays, 0.5) > limit:
            return None
        return min(limit, asked + percentile(delays, 0.9) + self.margin)

    def clear(self) -> None:
        """A new stream: what was asked for is no longer coming."""
        self._asked.clear()
        self._due.clear()
        self._came.clear()

    def _expire(self, now: float) -> None:
        while self._asked:
            ext, (asked, _) = next(iter(self._asked.items()))
            if now - asked < self.expire_s:
                break
            del self._asked[ext]
            self._unanswered += 1
            if self._unanswered >= self.give_up_after:
                self._answering = False
