"""How long a person waits for a call to start, across a real lossy or slow link (network namespaces,
nftables drops): POST → data channel open, measured at both ends by :mod:`tests.netbed.setup_probe`.

The client stands in for a browser: aiortc with a browser's fast retransmission timers, sending
each datagram once; the gateway as configured by default (DTLS server, copies of its set-up
datagrams, timers from the measured round trip). bench/setup_phases.py prints the phases.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from tests.netbed.bed import NetBed, require
from tests.netbed.setup_probe import run_setups

pytestmark = pytest.mark.netns


def test_setup_at_twenty_percent_loss_and_a_mobile_round_trip(tmp_path: Path) -> None:
    """20 % of UDP lost each way, 50 ± 20 ms: the median set-up stays under the issue's 1.5 s goal
    with a margin for CI load (bench/setup_phases.py, 40 set-ups: 0.94 s p50, 2.16 s p90; the
    gateway before: 1.50 / 3.63 s; aiortc's own timers: 8 s) and every set-up completes."""
    require()
    with NetBed(seed=17) as bed:
        bed.set_delay(50, jitter_ms=20)
        bed.set_loss(20)
        results, failed = run_setups(bed, 10, tmp_path)
    totals = sorted(round(r["total"], 2) for r in results if "failed" not in r)
    copied = [r["copies"] for r in results if "failed" not in r]
    print(f"POST → channel open at 20 % loss, 50 ± 20 ms: {totals} s; copies {copied}")
    assert not failed, failed
    assert statistics.median(totals) <= 1.6, totals  # margin for a loaded CI machine
    assert all(0 < n <= 80 for n in copied)  # the copies happened, within their bound


def test_a_slow_clean_link_is_not_slowed_or_flooded(tmp_path: Path) -> None:
    """300 ms round trip, nothing lost: set-up takes about six round trips as before, and the
    gateway sends each set-up datagram twice at most (its copy), no early resends on top."""
    require()
    with NetBed(seed=3) as bed:
        bed.set_delay(150)
        results, failed = run_setups(bed, 3, tmp_path)
    assert not failed, failed
    totals = [r["total"] for r in results]
    sent = [r["datagrams"] for r in results]
    print(f"POST → channel open at 150 ms each way: {[round(t, 2) for t in totals]} s; datagrams {sent}")
    assert statistics.median(totals) <= 2.3, totals  # measured 1.85 s with or without the copies
    for result in results:
        originals = result["datagrams"]["gateway"] - result["copies"]
        assert originals <= 20, result["datagrams"]  # 17 measured: no spurious resends
        assert result["datagrams"]["gateway"] <= 2 * 20, result["datagrams"]
        assert result["datagrams"]["client"] <= 20, result["datagrams"]  # the browser needs no repeats either
