"""The cluster bed, started once for the module: three instances, Redis, nginx, a fake upstream."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
from websockets.asyncio.server import serve

from tests.browser.conftest import launch  # noqa: F401 (Chromium, for the page through the front)
from tests.cluster.bed import ClusterBed, free_port, unavailable_reason
from tests.fake_upstream import Behaviour, FakeRealtimeServer

MAX_CALLS = 4  # cluster-wide
API_KEY = {"Authorization": "Bearer cluster-api-key-0123456789"}  # minting and sidebands need it


class ThreadedUpstream:
    """A FakeRealtimeServer on the bridge address, on a loop of its own (the bed outlives each test's loop)."""

    def __init__(self, host: str, port: int) -> None:
        self.server = FakeRealtimeServer(Behaviour())
        self._host, self._port = host, port
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="cluster-upstream", daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self._stop = asyncio.Event()
            async with serve(self.server._handle, self._host, self._port,
                             process_request=self.server._authorize, max_size=2**24):
                self._ready.set()
                await self._stop.wait()
        self._loop.run_until_complete(main())

    def __enter__(self) -> ThreadedUpstream:
        self._thread.start()
        assert self._ready.wait(10), "fake upstream did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterBed]:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    port = free_port()
    cluster = ClusterBed(tmp_path_factory.mktemp("cluster"), 3, upstream_url=None,
                         flags=("--api-keys", API_KEY["Authorization"].split()[1], "--max-calls", str(MAX_CALLS), "--rate-limit", "100000",
                                "--resume-grace", "30", "--peer-timeout", "1.5", "--shutdown-drain-timeout", "20"))
    cluster.upstream_url = f"ws://{cluster.bridge_address}:{port}/v1/realtime"
    cluster.open_network()
    try:
        with ThreadedUpstream(cluster.bridge_address, port):
            cluster.open_services()
            yield cluster
    finally:
        cluster.close()
