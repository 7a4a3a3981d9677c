"""The admission store: one semantics in memory and in SQLite, exact across processes, slots of a
dead worker reclaimed, and cheap enough to ask on every request."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from gateway.core.errors import AtCapacity, RateLimited
from gateway.core.limits import Rate
from gateway.server.admission import LocalAdmission, SharedAdmission, SqliteAdmission, store_path

Make = Callable[[int, int, Callable[[], float]], SharedAdmission]


@pytest.fixture(params=["memory", "sqlite"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Make:
    if request.param == "memory":
        return lambda calls, per_client, clock: LocalAdmission(calls, per_client, clock=clock)
    path = store_path(tmp_path)
    SqliteAdmission.create(path)
    return lambda calls, per_client, clock: SqliteAdmission(path, calls, per_client, clock=clock)


async def test_token_buckets(make: Make) -> None:
    now = [1000.0]
    store = make(10, 0, lambda: now[0])
    rate = Rate(per_minute=6, burst=3)  # a token every 10 s
    assert [await store.take("call:a", rate) for _ in range(3)] == [None] * 3
    assert await store.take("call:a", rate) == pytest.approx(10.0)
    assert await store.take("call:b", rate) is None  # keys are independent
    now[0] += 5
    assert await store.take("call:a", rate) == pytest.approx(5.0)
    now[0] += 5
    assert await store.take("call:a", rate) is None
    now[0] += 3600  # long idle: back to a full burst, not more
    assert [await store.take("call:a", rate) for _ in range(4)][-1] is not None


async def test_call_slots(make: Make) -> None:
    store = make(3, 2, time.monotonic)
    await store.reserve("s1", "a")
    await store.reserve("s2", "a")
    with pytest.raises(RateLimited) as client_full:
        await store.reserve("s3", "a")
    assert client_full.value.code == "too_many_calls" and client_full.value.status == 429
    await store.reserve("s3", "b")
    with pytest.raises(AtCapacity) as full:
        await store.reserve("s4", "c")
    assert full.value.code == "at_capacity" and full.value.status == 503
    await store.release("s1")
    await store.release("s1")  # idempotent
    await store.reserve("s4", "a")
    await store.close()


def test_a_dead_workers_slots_are_reclaimed(tmp_path: Path) -> None:
    path = store_path(tmp_path)
    SqliteAdmission.create(path)

    async def fill() -> None:
        dead = SqliteAdmission(path, 2, 0, pid=4242)
        await dead.reserve("s1", "a")
        await dead.reserve("s2", "b")
        alive = SqliteAdmission(path, 2, 0, pid=4343)
        with pytest.raises(AtCapacity):
            await alive.reserve("s3", "c")
        assert SqliteAdmission.reclaim(path, 4242) == 2
        await alive.reserve("s3", "c")

    asyncio.run(fill())


def _contend(path: str, worker: int) -> tuple[int, int, list[float]]:
    """In another process: 150 slot reservations and 150 takes; (slots won, tokens won, µs per op)."""
    async def run() -> tuple[int, int, list[float]]:
        store = SqliteAdmission(Path(path), 100, 0)
        slots = tokens = 0
        costs = []
        for i in range(150):
            started = time.perf_counter()
            try:
                await store.reserve(f"w{worker}-{i}", f"client-{i % 7}")
                slots += 1
            except AtCapacity:
                pass
            if await store.take("mint:one-client", Rate(per_minute=0.001, burst=120)) is None:
                tokens += 1
            costs.append((time.perf_counter() - started) / 2 * 1e6)
        return slots, tokens, costs

    return asyncio.run(run())


def test_limits_are_exact_across_processes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = store_path(tmp_path)
    SqliteAdmission.create(path)
    with ProcessPoolExecutor(2) as pool:
        results = list(pool.map(_contend, [str(path)] * 2, [0, 1]))
    assert sum(slots for slots, _, _ in results) == 100  # MAX_CALLS, not 2 × 100
    assert sum(tokens for _, tokens, _ in results) == 120  # one bucket's burst, not one per process
    costs = sorted(cost for _, _, per_op in results for cost in per_op)
    p50, p99 = statistics.median(costs), costs[int(len(costs) * 0.99)]
    with capsys.disabled():
        print(f"\nadmission store, 2 processes contending: p50 {p50:.0f} µs, p99 {p99:.0f} µs per operation")
    assert p50 < 1000, f"p50 {p50:.0f} µs per operation"
