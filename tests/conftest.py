"""Shared fixtures: a fake Realtime upstream and a gateway serving on a free loopback port."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.config import Config
from gateway.server.signaling import STATE_KEY, Gateway, create_app

from .fake_upstream import Behaviour, FakeRealtimeServer


@pytest.fixture(scope="session")
def event_loop_policy() -> asyncio.AbstractEventLoopPolicy:
    """The in-process tests run on the loop the gateway serves on (``EVENT_LOOP``, uvloop by
    default), so a test's gateway and its aiortc clients share the loop users' gateways run.
    ``TEST_EVENT_LOOP=asyncio`` runs them on asyncio's own selector loop instead."""
    if os.environ.get("TEST_EVENT_LOOP", Config.event_loop) == "uvloop":
        import uvloop
        return uvloop.EventLoopPolicy()
    return asyncio.DefaultEventLoopPolicy()


@dataclasses.dataclass
class RunningGateway:
    url: str
    app: web.Application
    config: Config
    runner: web.AppRunner

    @property
    def state(self) -> Gateway:
        return self.app[STATE_KEY]

    async def stop(self) -> None:
        """Stop serving (idempotent): what a user sees when the gateway goes down."""
        if self.runner.server is not None:
            await self.runner.cleanup()


ENGINE_TEST_KEY = "engine-test-key-0123456789"  # the test engine's ENGINE_API_KEY (engine_url)


def gateway_config(**overrides: Any) -> Config:
    values: dict[str, Any] = dict(upstream="url", openai_api_key="sk-test-upstream-key", engine_api_key=ENGINE_TEST_KEY,
                                  host="127.0.0.1", port=5000, web_root=None, playout_delay_ms=60,
                                  rate_limit_per_minute=100_000, max_calls_per_client=0,
                                  media_path=os.environ.get("MEDIA_PATH", Config.media_path))  # the suite on either path
    values.update(overrides)
    return Config(**values)


async def start_gateway(config: Config) -> tuple[RunningGateway, web.AppRunner]:
    app = create_app(config)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.host, 0)
    await site.start()
    gc.freeze()  # as gateway.cli does once it serves: no full collection of the start-up heap mid-call
    port = runner.addresses[0][1]
    return RunningGateway(f"http://127.0.0.1:{port}", app, config, runner), runner


@pytest.fixture
async def fake_upstream() -> AsyncIterator[FakeRealtimeServer]:
    async with FakeRealtimeServer(Behaviour()) as server:
        yield server
    assert not server.schema_problems, f"gateway sent events that break openai's GA types: {server.schema_problems}"


GatewayFactory = Callable[..., Any]


@pytest.fixture
async def make_gateway(fake_upstream: FakeRealtimeServer) -> AsyncIterator[GatewayFactory]:
    gateways: list[RunningGateway] = []

    async def make(**overrides: Any) -> RunningGateway:
        overrides.setdefault("upstream_url", fake_upstream.url)
        gateway, _ = await start_gateway(gateway_config(**overrides))
        gateways.append(gateway)
        return gateway

    yield make
    for gateway in gateways:
        await gateway.stop()


@pytest.fixture
async def gateway(make_gateway: GatewayFactory) -> RunningGateway:
    return await make_gateway()


@pytest.fixture(params=["native", "python"])
def media_path(request: pytest.FixtureRequest) -> str:
    """Both media paths (MEDIA_PATH); native is skipped where the extension is not built."""
    if request.param == "native":
        from gateway.media.native import available

        if (problem := available()) is not None:
            pytest.skip(problem)
    return str(request.param)


async def wait_healthy(url: str, timeout: float = 20.0) -> None:
    """Until ``url``'s /healthz answers 200 (a gateway process started in the background)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            async with aiohttp.ClientSession() as http, http.get(f"{url}/healthz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not become healthy within {timeout:.0f} s")
        await asyncio.sleep(0.1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def engine_url() -> Iterator[str]:
    """The real offline engine (python -m gateway.engine), started once for the whole session."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ENGINE_API_KEY": ENGINE_TEST_KEY}
    root = Path(__file__).resolve().parent.parent
    process = subprocess.Popen([sys.executable, "-m", "gateway.engine", "--port", str(port)], cwd=root, env=env)
    try:
        deadline = time.monotonic() + 600
        while True:
            assert process.poll() is None, "the engine exited during start-up"
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the engine did not become ready"
            time.sleep(0.3)
        yield f"ws://127.0.0.1:{port}/v1/realtime"
    finally:
        process.terminate()
        process.wait(10)
