"""RedisAdmission against a real redis-server: limits for the whole cluster, dead holders expire."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gateway.core.errors import AtCapacity, RateLimited
from gateway.core.limits import Rate
from gateway.server.cluster import redis_client
from gateway.server.redis_admission import RedisAdmission
from tests.cluster.bed import _wait_port, free_port


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (scripts/setup_cluster.sh)")
    port = free_port()
    workdir: Path = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", str(workdir)], stdout=subprocess.DEVNULL)
    try:
        _wait_port("127.0.0.1", port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
async def pair(redis_url: str) -> AsyncIterator[tuple[RedisAdmission, RedisAdmission]]:
    flush = redis_client(redis_url)
    await flush.flushdb()
    await flush.aclose()
    first, second = (RedisAdmission(redis_client(redis_url), name, 3, 2) for name in ("gw-a", "gw-b"))
    await asyncio.gather(first.beat(), second.beat())
    yield first, second
    await asyncio.gather(first.close(), second.close())


async def test_one_rate_for_every_instance(pair: tuple[RedisAdmission, RedisAdmission]) -> None:
    rate = Rate(per_minute=6, burst=5)
    verdicts = [await pair[i % 2].take("call:203.0.113.7", rate) for i in range(8)]
    assert verdicts[:5] == [None] * 5  # the burst, shared
    assert all(v is not None and 0 < v <= 10 for v in verdicts[5:]), verdicts
    assert await pair[0].take("call:198.51.100.1", rate) is None  # another client has its own bucket


async def test_call_slots_for_the_cluster_and_per_client(pair: tuple[RedisAdmission, RedisAdmission]) -> None:
    first, second = pair
    await first.reserve("rtc_1", "alice")
    await second.reserve("rtc_2", "alice")
    with pytest.raises(RateLimited):  # MAX_CALLS_PER_CLIENT=2 across instances
        await first.reserve("rtc_3", "alice")
    await second.reserve("rtc_3", "bob")
    with pytest.raises(AtCapacity):  # MAX_CALLS=3 across instances
        await first.reserve("rtc_4", "carol")
    await first.release("rtc_1")
    await first.release("rtc_1")  # idempotent
    await first.reserve("rtc_4", "carol")
    await asyncio.gather(first.beat(), second.beat())  # each instance's load, for the cluster
    assert await first.calls() == 3


async def test_a_dead_holder_expires_and_a_restarted_redis_gets_slots_back(
        pair: tuple[RedisAdmission, RedisAdmission], redis_url: str) -> None:
    first, second = pair
    await second.reserve("rtc_1", "bob")
    await second.reserve("rtc_2", "bob")
    await first.reserve("rtc_3", "carol")
    with pytest.raises(AtCapacity):
        await first.reserve("rtc_4", "dave")
    await second.redis.delete("gw:alive:gw-b")  # as if its heartbeat had expired (killed instance)
    await first.reserve("rtc_4", "dave")  # its two slots no longer count
    await first.reserve("rtc_5", "erin")
    wipe = redis_client(redis_url)
    await wipe.flushdb()  # Redis restarted without persistence
    await wipe.aclose()
    await first.beat()  # writes its three slots back
    with pytest.raises(AtCapacity):
        await second.reserve("rtc_6", "frank")
    assert await second.calls() == 3
