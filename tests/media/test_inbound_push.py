"""The gateway's receive path pushes each decoded mic frame straight to the upstream sink (no
consumer task woken in between): frames arrive on the 20 ms cadence, in order, each in the
step that decoded it; a failing sink still ends the pump with its error; hang-up ends it with
MediaStreamError, as in pull mode."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError

from gateway.media.inbound_audio import MicFrame, pump_mic
from tests.audio_tools import voiced
from tests.media.test_audio_receiver import close, connect, no_full_collection_while_measuring  # noqa: F401


async def test_frames_are_pushed_on_the_cadence_as_they_are_decoded() -> None:
    link = await connect(0.0)
    heard: list[tuple[float, asyncio.Task | None, int]] = []  # (when, the task it ran in, bytes)

    def sink(pcm: bytes, frame: MicFrame) -> None:
        heard.append((time.monotonic(), asyncio.current_task(), len(pcm)))

    pump = asyncio.create_task(pump_mic(link.source, sink))
    try:
        link.mic.say(voiced(2.0, 170.0, 48000, seed=3))
        await asyncio.sleep(2.5)
        assert link.source._sink is not None  # type: ignore[attr-defined]  # push mode, not recv()
    finally:
        await close(link)
    with pytest.raises(MediaStreamError):  # hang-up ends the pump, as in pull mode
        await asyncio.wait_for(pump, 5)
    times = np.array([t for t, _, _ in heard])
    assert len(heard) >= 110 and all(size == 960 for _, _, size in heard)  # 20 ms at 24 kHz
    assert np.diff(times).max() < 0.1
    # Each frame reaches the sink in the step that decoded it (aiortc's packet handler, or the
    # jitter buffer's deadline timer), not in the pump's task woken for it afterwards.
    assert not any(task is pump for _, task, _ in heard)


async def test_a_failing_sink_ends_the_pump_with_its_error() -> None:
    link = await connect(0.0)
    count = 0

    def sink(pcm: bytes, frame: MicFrame) -> None:
        nonlocal count
        count += 1
        if count == 10:
            raise RuntimeError("the upstream is gone")

    try:
        with pytest.raises(RuntimeError, match="the upstream is gone"):
            await asyncio.wait_for(pump_mic(link.source, sink), 5)
        assert count == 10
    finally:
        await close(link)
