"""Which lost mic packets to ask for again, and how long a gap is worth waiting for its resend.

A sender without in-band FEC (aiortc's encoder, FEC-less softphones) loses a whole 20 ms frame
per lost packet, and concealment makes about one word in nine wrong for the recogniser at 10 %
loss. aiortc's RTCRtpSender keeps its last 128 RTP packets and resends any of them on a generic
NACK (RFC 4585 §6.2.1), audio included; where the offer says ``a=rtcp-fb:<opus> nack`` the
gateway answers it and asks. :class:`NackPolicy` is the sans-I/O part the jitter buffer consults:

- **Ask once, when the gap opens**: a packet newer than the highest one seen reveals the run it
  skipped; each missing sequence number is asked for once, at once (a resend can only come one
  round trip later, and the frame is due now). Runs longer than ``max_run`` are an outage, not
  loss: not asked for.
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

SEQ_MOD = 1 << 16
MAX_DUE = 64


class NackPolicy:
    def __init__(self, *, max_wait: float = 0.08, margin: float = 0.01, memory_s: float = 10.0, samples: int = 32,
                 max_run: int = 8, give_up_after: int = 10, expire_s: float = 1.0) -> None:
        self.max_wait = max_wait
        self.margin = margin
        self.max_run = max_run
        self.give_up_after = give_up_after
        self.expire_s = expire_s
        self.requested = 0  # sequence numbers asked for
        self.answered = 0  # of those, came again (in time or not)
        self.memory_s = memory_s
        self._repairs: collections.deque[tuple[float, float]] = collections.deque(maxlen=samples)  # (when, delay)
        self._asked: collections.OrderedDict[int, float] = collections.OrderedDict()  # ext seq → when asked
        self._due: list[int] = []
        self._unanswered = 0  # requests in a row that expired unanswered
        self._answering = False  # a resend has come since the last run of unanswered requests

    def missing(self, first: int, last: int, have: Container[int] = ()) -> None:
        """Packets ``first``…``last`` (extended sequence numbers) were skipped by a newer one;
        ``have``: those of them already here (RED copies)."""
        if 0 < last - first + 1 <= self.max_run:
            self._due.extend(ext for ext in range(first, last + 1) if ext not in self._asked and ext not in have)
            del self._due[:-MAX_DUE]  # nobody takes them (no RTCP path): keep the newest

    def filled(self, ext: int) -> None:
        """``ext`` is no longer missing (a RED copy or a reordered packet came first): don't ask."""
        if ext in self._due:
            self._due.remove(ext)

    def take_due(self, now: float) -> list[int]:
        """The 16-bit sequence numbers to ask for now (each is asked for once)."""
        self._expire(now)
        due, self._due = self._due, []
        for ext in due:
            self._asked[ext] = now
        self.requested += len(due)
        return [ext % SEQ_MOD for ext in due]

    def arrived(self, ext: int, now: float) -> bool:
        """A packet arrived: whether it is one that was asked for (a resend, or a reordered packet
        that came after the request: either way the wait for it paid)."""
        self.filled(ext)
        asked = self._asked.pop(ext, None)
        if asked is None:
            return False
        self.answered += 1
        self._repairs.append((now, now - asked))
        self._unanswered = 0
        self._answering = True
        return True

    def hold_until(self, ext: int, gap_start: float, now: float) -> float | None:
        """Until when the gap at ``ext``, open since ``gap_start``, is worth waiting for (None: not
        asked for, or the sender does not answer)."""
        asked = self._asked.get(ext)
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

    def _expire(self, now: float) -> None:
        while self._asked:
            ext, asked = next(iter(self._asked.items()))
            if now - asked < self.expire_s:
                break
            del self._asked[ext]
            self._unanswered += 1
            if self._unanswered >= self.give_up_after:
                self._answering = False
