"""Bursty loss (Gilbert–Elliott): the rate and the run lengths asked for, in the chain and on the bed."""

from __future__ import annotations

import random

import numpy as np
import pytest

from .bed import NetBed
from .link import BurstLoss, GilbertElliott
from .probe import measure_udp


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
