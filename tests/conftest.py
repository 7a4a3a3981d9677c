"""Shared fixtures: a fake Realtime upstream and a gateway serving on a free loopback port."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web

from gateway.config import Config
from gateway.signaling import STATE_KEY, Gateway, create_app

from .fake_upstream import Behaviour, FakeRealtimeServer


@dataclasses.dataclass
class RunningGateway:
    url: str
    app: web.Application
    config: Config

    @property
    def state(self) -> Gateway:
        return self.app[STATE_KEY]


def gateway_config(**overrides: Any) -> Config:
    values: dict[str, Any] = dict(upstream="url", openai_api_key="sk-test-upstream-key",
                                  host="127.0.0.1", port=5000, web_root=None, playout_delay_ms=60)
    values.update(overrides)
    return Config(**values)


async def start_gateway(config: Config) -> tuple[RunningGateway, web.AppRunner]:
    app = create_app(config)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return RunningGateway(f"http://127.0.0.1:{port}", app, config), runner


@pytest.fixture
async def fake_upstream() -> AsyncIterator[FakeRealtimeServer]:
    async with FakeRealtimeServer(Behaviour()) as server:
        yield server
    assert not server.schema_problems, f"gateway sent events that break openai's GA types: {server.schema_problems}"


GatewayFactory = Callable[..., Any]


@pytest.fixture
async def make_gateway(fake_upstream: FakeRealtimeServer) -> AsyncIterator[GatewayFactory]:
    runners: list[web.AppRunner] = []

    async def make(**overrides: Any) -> RunningGateway:
        overrides.setdefault("upstream_url", fake_upstream.url)
        gateway, runner = await start_gateway(gateway_config(**overrides))
        runners.append(runner)
        return gateway

    yield make
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def gateway(make_gateway: GatewayFactory) -> RunningGateway:
    return await make_gateway()
