"""The assistant's voice on its way out: a track that yields one 20 ms frame per 20 ms.

aiortc's sender calls :meth:`OutboundAudioTrack.recv` in a loop and sends whatever it returns,
so this track *is* the pacing clock. Frames come from the conversation core (model audio, or
silence when idle). Deadlines are computed from the start time, never from the previous frame,
so there is no drift over a long call; after a stall longer than ``max_late`` the clock skips
ahead (the browser conceals the gap) instead of bursting the missed frames all at once.

A reply's first audio should not wait for the next tick of a clock that was only pacing
silence (10 ms on average): :meth:`OutboundAudioTrack.wake` sends it at once and the clock
goes on from there. Each such start sends up to one frame ahead of the RTP timeline; once the
lead reaches a whole frame, one silent frame is sent a frame late to give it back, so the
browser's jitter buffer never sees packets drift ahead.

The steps of :meth:`OutboundAudioTrack.recv` (:meth:`~OutboundAudioTrack.due`,
:meth:`~OutboundAudioTrack.woke`, :meth:`~OutboundAudioTrack.frame`) are public so that one
pacer can run many tracks without a coroutine each (:mod:`gateway.media.native.pacer`, the
native media path); :meth:`~OutboundAudioTrack.hand_over` parks aiortc's sender for that.
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

from ..core.audio_format import FRAME_S, WEBRTC_FRAME, WEBRTC_RATE

TIME_BASE = fractions.Fraction(1, WEBRTC_RATE)
GAP_S = 0.03

FrameSource = Callable[[float], np.ndarray]  # now → 960 int16 samples
Packetizer = Callable[[np.ndarray, int], "AudioFrame | Packet"]


def audio_frame(pcm: np.ndarray, pts: int) -> AudioFrame:
    """Wrap 48 kHz mono int16 samples for aiortc's own Opus encoder."""
    frame = AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = WEBRTC_RATE
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
        self._waiter: asyncio.Future[bool] | None = None
        self._lead = 0.0  # how far sends run ahead of the RTP timeline after wakes (s)
        self._last_silent = True
        self._woken = False
        self.wakes = 0
        self._held: asyncio.Future[None] | None = None
        self._on_wake: Callable[[], None] | None = None

    def wake(self) -> None:
        """Audio arrived while only silence was going out: send it now, not at the next tick."""
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(True)
        elif self._on_wake is not None:  # paced from outside (the native media path's pacer)
            self._on_wake()
        else:
            self._woken = True  # between two recv() calls: the next one goes at once

    def hold(self) -> None:
        """Until :meth:`release` or :meth:`hand_over`, :meth:`recv` waits before its first frame
        (the call decides at connection which path sends its audio)."""
        if self._held is None:
            self._held = asyncio.get_running_loop().create_future()

    def release(self) -> None:
        """aiortc's sender paces this track after all (the Python media path)."""
        if self._held is not None and not self._held.done():
            self._held.set_result(None)

    def hand_over(self, on_wake: Callable[[], None]) -> None:
        """Someone else paces this track from now on, through :meth:`due` and :meth:`frame`
        (:class:`gateway.media.native.pacer.Pacer`); :meth:`recv` never returns a frame again,
        so aiortc's sender stays idle. ``on_wake`` is told of every :meth:`wake`."""
        self._on_wake = on_wake
        if self._held is None:
            self._held = asyncio.get_running_loop().create_future()  # never set: recv() parks

    async def _wait(self, seconds: float) -> bool:
        """Sleep ``seconds``, or less if :meth:`wake` is called (then True)."""
        if self._woken:
            return True
        if self._sleep is not asyncio.sleep:  # an injected clock (tests): no early wake
            await self._sleep(seconds)
            return False
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()
        timer = loop.call_later(seconds, _settle, waiter)
        try:
            return await waiter
        finally:
            timer.cancel()
            self._waiter = None

    async def recv(self) -> AudioFrame | Packet:
        if self.readyState != "live":
            raise MediaStreamError
        if self._held is not None:
            await self._held  # hand_over(): forever (cancelled with the sender)
        now = self._clock()
        wait = self.due(now)
        if wait > 0:
            woken = await self._wait(wait)
            now = self._clock()
            if woken:
                self.woke(now)
        self._woken = False
        if self.readyState != "live":
            raise MediaStreamError
        return self.frame(now)

    # The pacing steps, for recv() and for an outside pacer: due() once per frame, then (after
    # waiting that long, or on a wake: woke() first) frame().

    def due(self, now: float) -> float:
        """Move on to the next frame; seconds until it is due (0: now)."""
        if self._start is None:
            self._start = now
            return 0.0
        self._pts += WEBRTC_FRAME
        if self._last_silent and self._lead >= FRAME_S:  # give a frame of lead back, in silence
            self._start += FRAME_S
            self._lead -= FRAME_S
            if self._last_sent is not None:
                self._last_sent += FRAME_S  # deliberate: not a stall
        late = now - (self._start + self._pts / WEBRTC_RATE)
        if late < 0:
            return -late
        if late > self._max_late:
            skip = round(late / FRAME_S)  # land on the frame due now, not one behind it
            self._pts += skip * WEBRTC_FRAME
            self.skipped_frames += skip
        return 0.0

    def woke(self, now: float) -> None:
        """The frame :meth:`due` waits for goes now, woken: the clock goes on from here."""
        early = max(0.0, self._start + self._pts / WEBRTC_RATE - now) if self._start is not None else 0.0
        self._start = (self._start or now) - early
        self._lead += early
        self.wakes += 1

    def frame(self, now: float) -> AudioFrame | Packet:
        """The frame :meth:`due` moved to, made now."""
        if self._last_sent is not None and now - self._last_sent > GAP_S and self._on_gap is not None:
            self._on_gap(now - self._last_sent)
        self._last_sent = now
        pcm = self._source(now)
        self._last_silent = not pcm.any()
        return self._packetize(pcm, self._pts)

    @property
    def pts(self) -> int:
        """The RTP timeline position (48 kHz samples) of the frame :meth:`frame` makes next."""
        return self._pts


def _settle(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)
