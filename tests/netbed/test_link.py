"""The relay's scheduling on its own (no root needed): delay, jitter, reordering, run-time changes."""

from __future__ import annotations

import random

import numpy as np
import pytest

from .link import DelayLine, LinkSettings


def run(line: DelayLine[int], count: int, interval: float) -> tuple[list[int], list[float]]:
    """Feed ``count`` packets ``interval`` s apart; returns leaving order and each packet's delay."""
    sent = {seq: seq * interval for seq in range(count)}
    due = {seq: line.push(sent[seq], seq) for seq in range(count)}
    order = line.pop_due(float("inf"))
    return order, [due[seq] - sent[seq] for seq in range(count)]


def test_delay_and_jitter_stay_within_what_was_asked() -> None:
    line: DelayLine[int] = DelayLine(random.Random(1), LinkSettings(delay_ms=50, jitter_ms=20))
    _, delays = run(line, 20_000, 0.02)
    ms = np.array(delays) * 1000
    assert ms.min() >= 30 and ms.max() <= 70
    assert abs(ms.mean() - 50) < 0.5
    assert abs(ms.std() - 40 / np.sqrt(12)) < 0.3  # uniform over ±20 ms


def test_jitter_wider_than_the_packet_gap_reorders_unless_told_not_to() -> None:
    shuffled, _ = run(DelayLine(random.Random(2), LinkSettings(30, 20, reorder=True)), 500, 0.002)
    assert sorted(shuffled) == list(range(500))
    assert sum(a > b for a, b in zip(shuffled, shuffled[1:], strict=False)) > 100

    in_order, delays = run(DelayLine(random.Random(2), LinkSettings(30, 20, reorder=False)), 500, 0.002)
    assert in_order == list(range(500))
    assert min(delays) >= 0.010  # still delayed and jittered, only never overtaking


def test_packets_leave_when_due_and_not_before() -> None:
    line: DelayLine[str] = DelayLine(random.Random(3), LinkSettings(delay_ms=40))
    line.push(1.0, "a")
    assert line.next_due() == pytest.approx(1.04)
    assert line.pop_due(1.039) == []
    assert line.pop_due(1.040) == ["a"]
    assert line.next_due() is None and len(line) == 0


def test_a_change_applies_to_the_next_packet_only() -> None:
    line: DelayLine[str] = DelayLine(random.Random(4), LinkSettings(delay_ms=100))
    line.push(0.0, "slow")
    line.settings = LinkSettings(delay_ms=0)
    line.push(0.01, "fast")
    assert line.pop_due(0.01) == ["fast"]
    assert line.pop_due(0.1) == ["slow"]


def test_in_order_mode_keeps_order_across_a_change() -> None:
    line: DelayLine[str] = DelayLine(random.Random(5), LinkSettings(delay_ms=100, reorder=False))
    line.push(0.0, "first")
    line.settings = LinkSettings(delay_ms=0, reorder=False)
    line.push(0.01, "second")
    assert line.pop_due(0.05) == []
    assert line.pop_due(0.1) == ["first", "second"]


def test_negative_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="delay and jitter"):
        LinkSettings(delay_ms=-1)
