"""The playout queue costs each delta, not the backlog, and holds a bounded amount of audio (issue 13)."""

from __future__ import annotations

import logging
import time
import tracemalloc

import numpy as np
import pytest

from gateway.core.playout import Playout

DELTA = (np.sin(np.arange(480) / 7.0) * 8000).astype(np.int16)  # 20 ms at 24 kHz
BYTES_PER_S = 48000 * 2  # queued audio is 48 kHz int16


def enqueue_cost(seconds: float) -> float:
    """CPU seconds to enqueue ``seconds`` of one reply in 20 ms deltas (best of three)."""
    best = float("inf")
    for _ in range(3):
        playout = Playout(max_queued_s=3600)
        started = time.process_time()
        for _ in range(int(seconds / 0.02)):
            playout.enqueue("resp_1", "item_1", DELTA)
        best = min(best, time.process_time() - started)
        assert playout.queued_s == pytest.approx(seconds)
    return best


def test_enqueue_is_linear_in_the_audio() -> None:
    short, long = enqueue_cost(60), enqueue_cost(240)
    # Four times the audio: ~4x the work when each delta costs its own size (re-copying the
    # backlog on every delta made it 7x here, quadratic in the limit).
    assert long / short < 5.5, (short, long)
    assert long < 3.0, long  # was 35 s of CPU on this machine with the copying queue


def test_everything_queued_plays_in_order_and_is_accounted() -> None:
    playout = Playout()
    ramp = np.arange(48_000, dtype=np.int64) % 20_000  # 2 s at 24 kHz, every sample distinct in its 0.83 s
    for start in range(0, len(ramp), 480):
        playout.enqueue("resp_1", "item_1", ramp[start:start + 480].astype(np.int16))
    frames = []
    while playout.has_queued_audio:
        frames.append(playout.next_frame().pcm)
    out = np.concatenate(frames)
    assert len(out) == 96_000 and len(frames) == 100
    item = playout.flush()[0]
    assert item.received == item.played == 96_000
    reference = Playout()
    assert reference.enqueue("resp_1", "item_1", ramp.astype(np.int16))  # the same audio in one delta
    whole = np.concatenate([reference.next_frame().pcm for _ in range(100)])
    assert np.array_equal(out, whole)  # chunking changes nothing heard


def test_queued_audio_is_bounded_and_the_rest_dropped(caplog: pytest.LogCaptureFixture) -> None:
    playout = Playout(max_queued_s=30)
    tracemalloc.start()
    with caplog.at_level(logging.WARNING, "gateway.core.playout"):
        accepted = sum(playout.enqueue("resp_1", "item_1", DELTA) for _ in range(int(240 / 0.02)))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert accepted == 1500  # 30 s of 20 ms deltas
    assert playout.queued_s == pytest.approx(30) and playout.dropped_s == pytest.approx(210)
    assert peak < 1.3 * 30 * BYTES_PER_S, peak  # 240 s would be 23 MB
    assert len([r for r in caplog.records if "dropping" in r.getMessage()]) == 1  # once per response
    # The ledger holds only what can be heard: a truncate never points past it.
    for _ in range(50):
        playout.next_frame()
    (item,) = playout.flush()
    assert item.received_ms == 30_000 and item.played_ms == 1_000
    # Room again once audio played out: a later reply is queued.
    assert playout.enqueue("resp_2", "item_2", DELTA)
