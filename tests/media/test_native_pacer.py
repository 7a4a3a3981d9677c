"""One pacing timer for many calls (gateway/media/native/pacer.py): every call gets its 50 frames
a second on its own timeline, with far fewer timer callbacks than frames, and a wake sends a
reply's first frame at once, as the per-call track does."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np

from gateway.media.native.pacer import PacedStream, Pacer
from gateway.media.outbound_audio import OutboundAudioTrack

SILENCE = np.zeros(960, np.int16)
VOICE = np.full(960, 1000, np.int16)


def paced(pacer: Pacer, source: Any = lambda now: SILENCE) -> tuple[OutboundAudioTrack, PacedStream, list[float]]:
    sent: list[float] = []
    track = OutboundAudioTrack(source, packetize=lambda pcm, pts: pts)
    stream = PacedStream(track, lambda frame, pts: sent.append(time.monotonic()))
    track.hand_over(lambda: pacer.wake(stream))
    return track, stream, sent


async def test_many_calls_share_one_timer_and_each_keeps_its_cadence() -> None:
    pacer = Pacer(asyncio.get_running_loop())
    streams = []
    for _ in range(30):
        streams.append(paced(pacer))
        pacer.add(streams[-1][1])
        await asyncio.sleep(0.0013)  # calls start at scattered moments
    started = time.monotonic()
    await asyncio.sleep(1.0)
    elapsed = time.monotonic() - started
    ticks = pacer.ticks
    for _, stream, _ in streams:
        pacer.remove(stream)
    assert len(pacer) == 0
    for track, _, sent in streams:
        window = [t for t in sent if t >= started]
        assert abs(len(window) - 50 * elapsed) <= 3, len(window)
        assert np.max(np.diff(sent)) < 0.06 or track.skipped_frames > 0
        assert track.pts == (len(sent) + track.skipped_frames) * 960  # the next frame's place: no drift
    frames = sum(len(sent) for _, _, sent in streams)
    assert ticks < frames / 3, (ticks, frames)  # ≈ 20 ms / tolerance callbacks per frame time, not one per call


async def test_a_wake_sends_the_waiting_frame_at_once() -> None:
    pacer = Pacer(asyncio.get_running_loop())
    audio = {"on": False}
    track, stream, sent = paced(pacer, lambda now: VOICE if audio["on"] else SILENCE)
    pacer.add(stream)
    await asyncio.sleep(0.205)  # between two ticks (about 5 ms after one)
    before = len(sent)
    audio["on"] = True
    woken_at = time.monotonic()
    track.wake()
    await asyncio.sleep(0.003)
    pacer.remove(stream)
    assert len(sent) == before + 1 and sent[-1] - woken_at < 0.003
    assert track.wakes == 1


async def test_a_stopped_track_leaves_the_pacer() -> None:
    pacer = Pacer(asyncio.get_running_loop())
    track, stream, sent = paced(pacer)
    alive = {"socket": True}
    other_track, other, other_sent = paced(pacer)
    other.alive = lambda: alive["socket"]
    pacer.add(stream)
    pacer.add(other)
    await asyncio.sleep(0.1)
    track.stop()
    alive["socket"] = False  # the connection's socket is closing
    counts = len(sent), len(other_sent)
    await asyncio.sleep(0.1)
    assert (len(sent), len(other_sent)) == counts and len(pacer) == 0


class RecordingLoop:
    """The running loop, noting every timer the pacer arms on it and which of them ran."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.timers: list[asyncio.TimerHandle] = []
        self.ran: set[int] = set()

    def call_later(self, delay: float, callback: Any, *args: Any) -> asyncio.TimerHandle:
        index = len(self.timers)

        def run() -> None:
            self.ran.add(index)
            callback(*args)

        self.timers.append(self._loop.call_later(delay, run))
        return self.timers[-1]

    def pending(self) -> int:
        """Timers armed that neither ran nor were cancelled."""
        return sum(1 for index, timer in enumerate(self.timers) if index not in self.ran and not timer.cancelled())

    def call_soon(self, callback: Any, *args: Any) -> asyncio.Handle:
        return self._loop.call_soon(callback, *args)


async def test_closing_the_pacer_stops_every_stream_and_leaves_no_timer() -> None:
    loop = RecordingLoop()
    pacer = Pacer(loop)  # type: ignore[arg-type]
    streams = [paced(pacer) for _ in range(3)]
    for _, stream, _ in streams:
        pacer.add(stream)
    await asyncio.sleep(0.1)
    assert pacer.armed and loop.pending() == 1 and all(len(sent) >= 4 for _, _, sent in streams)
    pacer.close()
    assert loop.pending() == 0
    counts = [len(sent) for _, _, sent in streams]
    ticks = pacer.ticks
    streams[0][0].wake()  # a reply arriving after the close sends nothing either
    await asyncio.sleep(0.1)
    assert [len(sent) for _, _, sent in streams] == counts and pacer.ticks == ticks
    assert len(pacer) == 0 and not pacer.armed
    pacer.close()  # idempotent
