"""The lossy-network bed itself: loss, delay, jitter, reordering, cuts and cleanup, measured."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from .bed import NetBed, require, _sh

pytestmark = pytest.mark.netns


@pytest.fixture
def bed():  # type: ignore[no-untyped-def]
    require()
    with NetBed(seed=3) as bed:
        yield bed


def measure(bed: NetBed, count: int = 1000) -> dict:
    echo = bed.spawn(bed.server, [sys.executable, "-m", "tests.netbed.probe", "echo", "9999"], stdout=subprocess.PIPE)
    assert echo.stdout is not None and echo.stdout.readline().strip() == "ready"
    sender = bed.spawn(bed.client, [sys.executable, "-m", "tests.netbed.probe", "send", bed.server.address, "9999",
                                    str(count)], stdout=subprocess.PIPE)
    out, _ = sender.communicate(timeout=60)
    echo.terminate()
    return json.loads(out)


def test_loss_delay_and_jitter_are_what_was_asked(bed: NetBed) -> None:
    clean = measure(bed, 300)
    assert clean["echoed"] == 300
    assert np.median(clean["forward_ms"]) < 5

    bed.set_loss(10)  # dropped on arrival at each end: an echo survives both legs with p = 0.81
    lossy = measure(bed, 2000)
    survived = lossy["echoed"] / lossy["sent"]
    assert 0.77 < survived < 0.85

    bed.set_loss(0)
    bed.set_delay(50, jitter_ms=20)
    delayed = np.array(measure(bed, 500)["forward_ms"])
    assert 48 <= np.median(delayed) <= 56
    assert delayed.min() >= 29 and delayed.max() <= 75
    assert 8 <= delayed.std() <= 16  # uniform ±20 ms: σ ≈ 11.5 ms


def test_reordering_happens_only_when_allowed(bed: NetBed) -> None:
    bed.set_delay(30, jitter_ms=20, reorder=True)
    shuffled = measure(bed, 400)["order"]
    assert shuffled != sorted(shuffled)
    bed.set_delay(30, jitter_ms=20, reorder=False)
    ordered = measure(bed, 400)["order"]
    assert ordered == sorted(ordered)


def test_cut_and_restore(bed: NetBed) -> None:
    bed.set_loss(0)
    bed.cut()
    assert measure(bed, 100)["echoed"] == 0
    bed.restore()
    assert measure(bed, 100)["echoed"] == 100


def test_closing_leaves_nothing_behind() -> None:
    require()
    with NetBed() as bed:
        names = (bed.client.namespace, bed.server.namespace)
        relay = bed._relay
    listing = _sh("ip", "netns", "list").stdout
    assert not any(name in listing for name in names)
    assert relay is not None and relay.poll() is not None
