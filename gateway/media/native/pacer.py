"""One clock for every call's outbound audio in a worker: one timer, not a coroutine per call.

Each :class:`PacedStream` is an :class:`~gateway.media.outbound_audio.OutboundAudioTrack` that
was handed over (:meth:`~gateway.media.outbound_audio.OutboundAudioTrack.hand_over`) and a
function that puts a frame on the wire. The track still decides *when* its frames are due
(start-anchored deadlines, skips after a stall, wakes for a reply's first frame, lead given back
in silence): the pacer only runs its :meth:`~OutboundAudioTrack.due` /
:meth:`~OutboundAudioTrack.frame` steps, the way aiortc's sender loop runs ``recv()`` — the
next frame is asked for right after one was sent. Frames due within ``tolerance`` of each
other go out in one timer callback, so N calls cost about ``20 ms / tolerance`` callbacks per
frame time, not N; a frame leaves at most ``tolerance`` before its deadline (the RTP timestamp
is the timeline, unaffected).

A worker's pacer is owned by its :class:`~gateway.media.native.shared_media.SharedMedia`, which
makes it on the app's loop at start-up and closes it (:meth:`Pacer.close`) at cleanup.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from ..outbound_audio import OutboundAudioTrack

logger = logging.getLogger(__name__)
TOLERANCE_S = 0.002
MAX_SENDS_PER_TICK = 3  # a stream's frame, and the one a skip after a stall lands on

Send = Callable[[Any, int], None]  # (the track's frame, its pts) → on the wire


class PacedStream:
    def __init__(self, track: OutboundAudioTrack, send: Send, *, alive: Callable[[], bool] = lambda: True) -> None:
        """``alive()`` is asked before every send (the socket may be closing under it)."""
        self.track = track
        self.send = send
        self.alive = alive
        self.due_at = 0.0
        self.frames = 0


class Pacer:
    """Paces the streams given to :meth:`add` on ``loop`` (one per worker: see ``SharedMedia``)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, clock: Callable[[], float] = time.monotonic,
                 tolerance: float = TOLERANCE_S) -> None:
        self._loop = loop
        self._clock = clock
        self._tolerance = tolerance
        self._streams: list[PacedStream] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self.ticks = 0

    def __len__(self) -> int:
        return len(self._streams)

    def add(self, stream: PacedStream) -> None:
        """Start pacing ``stream``; its first frame goes at once. The track must have been
        handed over with ``on_wake=lambda: pacer.wake(stream)``."""
        stream.due_at = self._clock() + stream.track.due(self._clock())
        self._streams.append(stream)
        self._arm(stream.due_at)

    def remove(self, stream: PacedStream) -> None:
        if stream in self._streams:
            self._streams.remove(stream)
        if not self._streams and self._timer is not None:
            self._timer.cancel()
            self._timer = self._timer_at = None

    @property
    def armed(self) -> bool:
        """A timer callback is pending (there are streams to pace)."""
        return self._timer is not None

    def close(self) -> None:
        """Stop pacing (idempotent): the pending timer is cancelled and every stream dropped, so
        nothing of the pacer runs on the loop afterwards. For the owner, at shutdown."""
        self._streams.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = self._timer_at = None

    def wake(self, stream: PacedStream) -> None:
        """The track's reply audio arrived: its waiting frame goes now (from the next loop step,
        not inside the caller that queued the audio)."""
        self._loop.call_soon(self._serve_woken, stream)

    def _serve_woken(self, stream: PacedStream) -> None:
        now = self._clock()
        if stream not in self._streams or stream.due_at <= now + self._tolerance:
            return  # gone, or due anyway: the timer sends it
        stream.track.woke(now)
        self._send(stream, now)

    def _send(self, stream: PacedStream, now: float) -> None:
        track = stream.track
        if track.readyState != "live" or not stream.alive():
            logger.debug("outbound stream ends (track %s, socket %s)", track.readyState,
                         "open" if stream.alive() else "closing")
            self.remove(stream)
            return
        try:
            stream.send(track.frame(now), track.pts)
            stream.frames += 1
            after = self._clock()  # the next frame is asked for right after this one was sent
            stream.due_at = after + track.due(after)
        except Exception:
            logger.exception("outbound audio failed: the call's stream stops")
            self.remove(stream)

    def _arm(self, at: float) -> None:
        if self._timer is not None and self._timer_at is not None and self._timer_at <= at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = self._loop.call_later(max(0.0, at - self._clock()), self._tick)

    def _tick(self) -> None:
        self._timer = self._timer_at = None
        self.ticks += 1
        for stream in tuple(self._streams):
            sends = 0
            now = self._clock()  # fresh for each call: the ones before it took time
            while stream.due_at <= now + self._tolerance and sends < MAX_SENDS_PER_TICK and stream in self._streams:
                self._send(stream, now)
                sends += 1
                now = self._clock()
        if self._streams:
            self._arm(min(stream.due_at for stream in self._streams))
