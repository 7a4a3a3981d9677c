"""The assistant's voice on its way out: a track that yields one 20 ms frame per 20 ms.

aiortc's sender calls :meth:`OutboundAudioTrack.recv` in a loop and sends whatever it returns,
so this track *is* the pacing clock. Frames come from the conversation core (model audio, or
silence when idle). Deadlines are computed from the start time, never from the previous frame,
so there is no drift over a long call; after a stall longer than ``max_late`` the clock skips
ahead (the browser conceals the gap) instead of bursting the missed frames all at once.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections.abc import Awaitable, Callable

import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame
from av.packet import Packet

RATE = 48000
FRAME_SAMPLES = 960
FRAME_S = FRAME_SAMPLES / RATE
TIME_BASE = fractions.Fraction(1, RATE)
GAP_S = 0.03

FrameSource = Callable[[float], np.ndarray]  # now → 960 int16 samples
Packetizer = Callable[[np.ndarray, int], "AudioFrame | Packet"]


def audio_frame(pcm: np.ndarray, pts: int) -> AudioFrame:
    """Wrap 48 kHz mono int16 samples for aiortc's own Opus encoder."""
    frame = AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = RATE
    frame.pts = pts
    frame.time_base = TIME_BASE
    return frame


class OutboundAudioTrack(MediaStreamTrack):
    kind = "audio"

    def __init__(
        self,
        source: FrameSource,
        *,
        packetize: Packetizer = audio_frame,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        max_late: float = 0.06,
        on_gap: Callable[[float], None] | None = None,
    ) -> None:
        """``on_gap(seconds)`` is told of every frame sent more than 30 ms after the previous one
        (a stall the browser will have to conceal)."""
        super().__init__()
        self._source = source
        self._packetize = packetize
        self._clock = clock
        self._sleep = sleep
        self._max_late = max_late
        self._start: float | None = None
        self._pts = 0
        self.skipped_frames = 0  # frames the clock skipped after stalls (for stats)
        self._on_gap = on_gap
        self._last_sent: float | None = None

    async def recv(self) -> AudioFrame | Packet:
        if self.readyState != "live":
            raise MediaStreamError
        now = self._clock()
        if self._start is None:
            self._start = now
        else:
            self._pts += FRAME_SAMPLES
            late = now - (self._start + self._pts / RATE)
            if late < 0:
                await self._sleep(-late)
                now = self._clock()
            elif late > self._max_late:
                skip = round(late / FRAME_S)  # land on the frame due now, not one behind it
                self._pts += skip * FRAME_SAMPLES
                self.skipped_frames += skip
        if self.readyState != "live":
            raise MediaStreamError
        if self._last_sent is not None and now - self._last_sent > GAP_S and self._on_gap is not None:
            self._on_gap(now - self._last_sent)
        self._last_sent = now
        return self._packetize(self._source(now), self._pts)
