"""When turns happen: per-call figures, and the clock that dates the user's speech.

The upstream reports speech boundaries in milliseconds of the input buffer; the gateway knows
when it sent each 20 ms of that buffer. Joining the two dates the end of the user's speech on the
gateway's clock, which is where turn latency (end of speech → first reply audio out) starts.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

from .audio_format import upstream_ms


@dataclass
class TurnStats:
    """Per-call figures for the call's summary line."""

    turns: int = 0
    latencies_s: list[float] = field(default_factory=list)  # end of user speech → first reply audio
    interruptions: int = 0


@dataclass
class Measurements:
    """Timings taken since the last drain, for metrics (see ``Conversation.drain_measurements``)."""

    turn_latency_s: list[float] = field(default_factory=list)  # end of user speech → first reply audio
    barge_in_s: list[float] = field(default_factory=list)  # reply cut → first silent frame out
    outbound_latency_s: list[float] = field(default_factory=list)  # model audio arrival → its first frame out


class InputClock:
    """Maps input-buffer milliseconds (as the upstream counts them) to when we sent that audio."""

    def __init__(self, horizon: int = 3000) -> None:
        self._sent_ms = 0.0
        self._marks: collections.deque[tuple[float, float]] = collections.deque(maxlen=horizon)

    def sent(self, samples_24k: int, now: float) -> None:
        self._sent_ms += upstream_ms(samples_24k)
        self._marks.append((self._sent_ms, now))

    def time_of(self, audio_ms: float) -> float | None:
        for sent_ms, when in reversed(self._marks):
            if sent_ms <= audio_ms:
                return when
        return None
