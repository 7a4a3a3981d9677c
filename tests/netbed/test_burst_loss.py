"""Bursty loss (Gilbert–Elliott): the rate and the run lengths asked for, in the chain and on the bed."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from tests.audio_tools import DATA

from .bed import NetBed, require
from .link import BurstLoss, GilbertElliott
from .probe import measure_udp
from .scenario import run_call


def runs_of_loss(lost: list[bool]) -> list[int]:
    runs, current = [], 0
    for gone in lost:
        if gone:
            current += 1
        elif current:
            runs.append(current)
            current = 0
    return runs + ([current] if current else [])


@pytest.mark.parametrize(("percent", "burst"), [(10, 3), (20, 3), (30, 2), (10, 1)])
def test_the_chain_loses_the_rate_asked_in_runs_of_the_mean_asked(percent: float, burst: float) -> None:
    chain = GilbertElliott(random.Random(percent), BurstLoss(percent, burst))
    lost = [chain.drops() for _ in range(200_000)]
    runs = runs_of_loss(lost)
    assert abs(100 * np.mean(lost) - percent) < 0.1 * percent
    assert abs(np.mean(runs) - burst) < 0.05 * burst
    assert chain.dropped == sum(lost) and chain.bursts == len(runs)


def test_independent_loss_has_runs_the_chain_makes_longer() -> None:
    """At the same 10 %, a mean burst of 3 makes runs of ≥ 3 common; independent drops almost never do."""
    rng = random.Random(5)
    independent = runs_of_loss([rng.random() < 0.1 for _ in range(100_000)])
    chain = GilbertElliott(random.Random(5), BurstLoss(10, 3))
    bursty = runs_of_loss([chain.drops() for _ in range(100_000)])
    assert sum(r >= 3 for r in bursty) > 10 * sum(r >= 3 for r in independent)


def test_impossible_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        BurstLoss(60, 1)  # 60 % in runs of one cannot be
    with pytest.raises(ValueError):
        BurstLoss(10, 0.5)


@pytest.mark.netns
def test_the_bed_drops_udp_in_bursts_and_keeps_tcp(netbed: NetBed) -> None:
    netbed.set_loss(20, at=netbed.server, burst=3)
    result = measure_udp(netbed.client, netbed.server, count=3000, interval=0.001)
    arrived = set(result.order)
    runs = runs_of_loss([seq not in arrived for seq in range(result.sent)])
    stats = netbed.relay_stats()["links"]["client>server"]
    print(f"bursty 20 %/3: lost {100 * result.loss:.1f} %, mean run {np.mean(runs):.2f}, relay {stats}")
    assert 0.15 < result.loss < 0.25
    assert 2.3 < np.mean(runs) < 3.8
    assert stats["burst_dropped"] == result.sent - result.received
    back = measure_udp(netbed.server, netbed.client, count=500, interval=0.001)
    assert back.loss == 0  # only the direction into the server
    netbed.set_loss(0, at=netbed.server, burst=3)
    assert measure_udp(netbed.client, netbed.server, count=500, interval=0.001).loss == 0


@pytest.mark.netns
def test_a_bursty_call_conceals_only_what_red_and_fec_cannot_carry(tmp_path: Path) -> None:
    """A Chromium-like sender (Opus + FEC inside RED, distance 1) across 50 ± 20 ms with 10 % loss in
    runs of 3: every burst's last packet comes back whole from the next packet's copy, so at most
    ``dropped − bursts`` frames are made up, and no frame is inserted for nothing (the stream keeps
    the caller's length)."""
    require()
    with NetBed(seed=33) as bed:
        bed.set_delay(50, jitter_ms=20)
        bed.set_loss(10, at=bed.server, burst=3)
        summary, _, _ = run_call(bed, tmp_path, [DATA / "pt_br_historia.wav", DATA / "pt_br_dom_casmurro.wav"],
                                      client_args=["--red", "--tuned-timers"], server_args=["--no-nack"])
        link = bed.relay_stats()["links"]["client>server"]
    made_up = summary["mic_nack"]["concealed"] + summary["mic_nack"]["inserted"]
    frames = summary["mic_frames"]
    sent = frames.pop("sent_by_peer")
    print(f"mic frames {frames} of {sent}, made up {made_up}; {summary['mic_nack']}; link {link}")
    assert link["bursts"] > 8 and link["burst_dropped"] > 0.05 * sent
    assert made_up <= link["burst_dropped"] - link["bursts"]
    assert sent - 5 <= sum(frames.values()) <= sent + 3  # neither gaps nor stretching
    assert summary["jitter_buffer_ms"]["p95"] <= 80
