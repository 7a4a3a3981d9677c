"""The outbound track is the pacing clock: steady 20 ms frames, no drift, no bursts after stalls."""

from __future__ import annotations

import asyncio
import statistics
import time

import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError

from gateway.media.outbound_audio import OutboundAudioTrack


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.emitted: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def make(clock: FakeClock) -> OutboundAudioTrack:
    def source(now: float) -> np.ndarray:
        clock.emitted.append(now)
        return np.zeros(960, np.int16)
    return OutboundAudioTrack(source, clock=clock, sleep=clock.sleep)


async def test_ten_minutes_without_drift() -> None:
    clock = FakeClock()
    track = make(clock)
    for _ in range(30_000):  # 10 minutes of 20 ms frames
        frame = await track.recv()
        clock.now += 0.0003  # the sender's own work per frame
    assert frame.pts == 29_999 * 960
    elapsed = clock.emitted[-1] - clock.emitted[0]
    assert elapsed == pytest.approx(29_999 * 0.02, abs=0.001)  # < 1 ms drift after 10 min
    gaps = np.diff(clock.emitted)
    assert gaps.max() < 0.0201 and gaps.min() > 0.0199


async def test_a_stall_skips_ahead_instead_of_bursting() -> None:
    clock = FakeClock()
    track = make(clock)
    for _ in range(10):
        await track.recv()
    clock.now += 0.5  # the event loop was blocked for half a second
    before = len(clock.emitted)
    for _ in range(10):
        frame = await track.recv()
    after = np.diff(clock.emitted[before:])
    assert (after > 0.0199).all(), "frames after a stall must keep their 20 ms spacing"
    assert track.skipped_frames >= 20
    # RTP time moved on with the wall clock, so the browser sees a gap, not a delay.
    assert frame.pts == round((clock.emitted[-1] - clock.emitted[0]) / 0.02) * 960


async def test_small_lateness_is_caught_up_without_skipping() -> None:
    clock = FakeClock()
    track = make(clock)
    await track.recv()
    clock.now += 0.045  # late by ~2 frames: caught up, timestamps stay contiguous
    frames = [await track.recv() for _ in range(5)]
    assert [f.pts for f in frames] == [960 * i for i in range(1, 6)]
    assert track.skipped_frames == 0


async def test_stopped_track_ends() -> None:
    clock = FakeClock()
    track = make(clock)
    track.stop()
    with pytest.raises(MediaStreamError):
        await track.recv()


async def test_a_reply_goes_out_at_once_and_sends_stay_on_the_rtp_timeline() -> None:
    """wake(): the reply's first frame leaves now instead of at the next 20 ms tick of the clock
    that paced silence; the lead this takes over the RTP timeline is given back in silence, so ten
    replies later the sends have not drifted ahead. (Real event loop and clock.)"""
    speaking = False

    def source(now: float) -> np.ndarray:
        return np.full(960, 1000 if speaking else 0, np.int16)

    track = OutboundAudioTrack(source, packetize=lambda pcm, pts: (pcm, pts))  # type: ignore[arg-type,return-value]
    sent: list[tuple[float, int, bool]] = []

    async def sender() -> None:
        while True:
            pcm, pts = await track.recv()  # type: ignore[misc]
            sent.append((time.monotonic(), pts, bool(pcm.any())))

    task = asyncio.create_task(sender())
    try:
        delays = []
        for reply in range(10):
            await asyncio.sleep(0.2 + 0.0037 * reply)  # silence, and a different phase against the clock each time
            speaking = True
            woke = time.monotonic()
            track.wake()
            while not sent[-1][2]:
                await asyncio.sleep(0.0005)
            delays.append(next(t for t, _, audible in sent if audible and t >= woke) - woke)
            await asyncio.sleep(0.1)
            speaking = False
        await asyncio.sleep(0.3)
    finally:
        task.cancel()
    assert track.wakes >= 5  # (a wake that lands just as a frame falls due needs no early send)
    assert statistics.median(delays) < 0.005, delays  # vs ~10 ms on average waiting for the tick
    pts = np.array([p for _, p, _ in sent])
    assert (np.diff(pts) >= 960).all()  # RTP time never goes back or repeats
    start = sent[0][0]
    offsets = [t - start - p / 48000 for t, p, _ in sent]  # < 0: sent ahead of the timeline
    assert min(offsets) > -0.045 and offsets[-1] > -0.025, (min(offsets), offsets[-1])


async def test_a_held_track_sends_nothing_until_released() -> None:
    """The native media path decides at connection who paces the track: until then aiortc's
    sender waits; released, it gets frames as before."""
    clock = FakeClock()
    track = make(clock)
    track.hold()
    first = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0.02)
    assert not first.done() and clock.emitted == []
    track.release()
    await asyncio.wait_for(first, 1)
    await track.recv()
    assert len(clock.emitted) == 2 and clock.emitted[1] - clock.emitted[0] == pytest.approx(0.02)


async def test_a_handed_over_track_is_paced_through_its_steps_and_forwards_wakes() -> None:
    clock = FakeClock()
    track = make(clock)
    woken: list[bool] = []
    track.hand_over(lambda: woken.append(True))
    parked = asyncio.ensure_future(track.recv())  # aiortc's sender: parked for good
    assert track.due(clock.now) == 0.0
    track.frame(clock.now)
    wait = track.due(clock.now + 0.005)
    assert wait == pytest.approx(0.015)
    track.wake()  # a reply's first audio: the outside pacer is told, and sends early
    assert woken == [True]
    track.woke(clock.now + 0.005)
    track.frame(clock.now + 0.005)
    assert track.wakes == 1 and track.due(clock.now + 0.005) == pytest.approx(0.02)  # the clock goes on from the wake
    await asyncio.sleep(0.01)
    assert not parked.done()
    parked.cancel()
