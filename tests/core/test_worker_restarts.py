"""When the supervisor replaces a dead worker, and when it calls it a crash loop."""

from __future__ import annotations

from gateway.core.worker_restarts import MAX_BACKOFF_S, WorkerRestarts


def test_a_worker_that_keeps_dying_waits_longer_each_time() -> None:
    restarts = WorkerRestarts(max_restarts=100, window_s=60.0, backoff_s=1.0)
    delays = [restarts.died(1, now=float(t)) for t in range(8)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, MAX_BACKOFF_S, MAX_BACKOFF_S, MAX_BACKOFF_S]
    assert restarts.died(0, now=8.0) == 1.0  # another worker's first death is not held against it
    assert restarts.replaced == {1: 8, 0: 1}


def test_more_deaths_than_allowed_within_the_window_is_a_crash_loop() -> None:
    restarts = WorkerRestarts(max_restarts=2, window_s=60.0, backoff_s=0.5)
    assert restarts.died(0, now=0.0) == 0.5
    assert restarts.died(1, now=10.0) == 0.5
    assert restarts.died(0, now=59.0) is None  # a third death (of any worker) within 60 s
    assert restarts.recent_deaths == 3
    assert restarts.replaced == {0: 1, 1: 1}  # the one given up on was not replaced


def test_deaths_older_than_the_window_are_forgotten() -> None:
    restarts = WorkerRestarts(max_restarts=2, window_s=60.0, backoff_s=0.5)
    assert restarts.died(0, now=0.0) == 0.5
    assert restarts.died(0, now=30.0) == 1.0
    assert restarts.died(0, now=100.0) == 0.5  # both earlier deaths are out of the window: a fresh start
    assert restarts.died(0, now=101.0) == 1.0
    assert restarts.died(0, now=102.0) is None


def test_no_restarts_allowed_means_the_first_death_stops_the_gateway() -> None:
    assert WorkerRestarts(max_restarts=0, window_s=60.0, backoff_s=1.0).died(0, now=0.0) is None
