"""The mic never reaches the upstream faster than real time, whatever the RTP claims.

The upstream bills the audio it receives, and what the receive path makes of a packet depends
on numbers the browser chose: a sequence gap is concealed frame by frame, a timestamp jump is
filled, a 120 ms Opus packet decodes to 120 ms, a flood of well-numbered packets decodes to a
flood of audio. :class:`AudioBudget` is a token bucket of audio seconds: the wall clock adds
one second per second, every frame released spends its duration. So the upstream never
receives more audio than wall-clock time plus the bucket.

- **Real audio** (a decoded packet, a frame rebuilt from FEC) may spend ``burst_s`` plus up to
  ``carry_s`` of time that passed with nothing released: packets that come bunched after a
  delay, or after an event-loop hiccup, still all get through.
- **Invented audio** (concealment, fill for time without packets) only sees ``burst_s`` and may
  only spend it down to ``reserve_s``: it yields to real audio, and a stream that has run ahead
  of the clock gets none.
- **Borrowing.** When a stall was bridged with invented frames and then its packets came after
  all, bunched, those packets stand for time the invented frames already filled. The jitter
  buffer then releases them as a :meth:`borrow` against that invented audio once the bucket is
  down to the reserve. The debt is repaid by skipping the next concealment (the next loss or
  outage: the stream comes back in step with the clock); until then no stall is bridged — so
  none can be borrowed against — and a stall's time is left to its delayed packets instead.
  So the upstream receives at most wall-clock time plus ``burst_s`` plus one bridged stall
  (the jitter buffer bridges ``max_stall_s``, 2 s by default, at most).

Over a window of a few seconds of continuous abuse (lying numbering, floods) that is at most
``burst_s`` more than real time. A sender that first stays silent past the bridged stall (or
for a busy loop's hiccup) gets ``carry_s`` back at once: the total never exceeds real time plus
the bounds above.

Sans-I/O: ``now`` is passed in.
"""

from __future__ import annotations

_EPSILON = 1e-6  # arrival times in tests are exact multiples of 20 ms; floats are not


class AudioBudget:
    def __init__(self, burst_s: float = 0.2, *, reserve_s: float | None = None, carry_s: float = 1.0) -> None:
        if burst_s <= 0 or carry_s < 0:
            raise ValueError("burst_s must be > 0 and carry_s >= 0")
        self.burst_s = burst_s
        self.reserve_s = burst_s / 2 if reserve_s is None else reserve_s
        self.carry_s = carry_s
        self.debt_s = 0.0  # real audio borrowed against bridged stalls, not yet repaid
        self.refused_s = 0.0  # audio not released because it would have outrun the clock
        self._tokens = burst_s
        self._at: float | None = None

    @property
    def in_debt(self) -> bool:
        return self.debt_s > _EPSILON

    def take(self, seconds: float, now: float, *, invented: bool = False) -> bool:
        """Spend ``seconds`` of audio released at ``now``, if the budget allows it. Invented
        audio refused during a debt repays it."""
        self._refill(now)
        if invented and self.in_debt:
            repaid = max(0.0, min(seconds, self.debt_s, self._tokens))
            self.debt_s -= repaid
            self._tokens -= repaid
            self.refused_s += seconds
            return False
        if invented:
            allowed = min(self._tokens, self.burst_s) - seconds >= self.reserve_s - _EPSILON
        else:
            allowed = self._tokens - seconds >= -_EPSILON
        if not allowed:
            self.refused_s += seconds
            return False
        self._tokens -= seconds
        return True

    def borrow(self, seconds: float) -> None:
        """Real audio released outside the bucket, against invented audio released before that it
        makes redundant (the caller knows how much that is)."""
        self.debt_s += seconds

    def tokens(self, now: float) -> float:
        """Seconds of real audio the bucket holds at ``now``."""
        self._refill(now)
        return self._tokens

    def available(self, now: float) -> float:
        """Seconds of invented audio the bucket holds at ``now``, reserve included (none while a
        debt is outstanding)."""
        if self.in_debt:
            return 0.0
        self._refill(now)
        return max(0.0, min(self._tokens, self.burst_s))

    def _refill(self, now: float) -> None:
        if self._at is not None and now > self._at:
            self._tokens = min(self.burst_s + self.carry_s, self._tokens + now - self._at)
        if self._at is None or now > self._at:
            self._at = now
