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
