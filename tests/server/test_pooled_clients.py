"""The process's HTTP clients are pooled and owned by the application: a /metrics scrape that
asks the sibling workers, and a call refused while the local engine is full, open no new
connection each; the connections close when the application does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from gateway.server import metrics_endpoint
from gateway.server.metrics import GatewayMetrics
from tests.conftest import GatewayFactory, free_port
from tests.server.page_client import PageClient
from tests.server.test_metrics_access import TOKEN, worker_zero
from tests.server.test_signaling import offer_sdp

ROUNDS = 10


@dataclass
class CountingServer:
    """A stand-in (sibling worker, engine) that counts the connections its requests came on."""

    connections: set[asyncio.BaseTransport] = field(default_factory=set)
    requests: int = 0

    def counted(self, body: web.Response) -> web.Application:
        async def handle(request: web.Request) -> web.Response:
            self.requests += 1
            assert request.transport is not None
            self.connections.add(request.transport)
            return web.Response(body=body.body, content_type=body.content_type)

        app = web.Application()
        app.router.add_get("/{path:.*}", handle)
        return app

    async def all_closed(self, timeout: float = 5.0) -> bool:
        deadline = asyncio.get_running_loop().time() + timeout
        while not all(t.is_closing() for t in self.connections):
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True


@asynccontextmanager
async def serve(app: web.Application, site: str | int) -> AsyncIterator[web.AppRunner]:
    runner = web.AppRunner(app)
    await runner.setup()
    await (web.UnixSite(runner, site) if isinstance(site, str) else web.TCPSite(runner, "127.0.0.1", site)).start()
    try:
        yield runner
    finally:
        await runner.cleanup()


@pytest.fixture
async def sibling(tmp_path: Path) -> AsyncIterator[CountingServer]:
    """Worker 1 of this host, on its private socket."""
    server = CountingServer()
    app = server.counted(web.Response(body=GatewayMetrics(worker="1").render(), content_type="text/plain"))
    async with serve(app, str(tmp_path / "worker-1.sock")):
        yield server


async def test_metrics_scrapes_reuse_one_connection_to_each_sibling(
        sibling: CountingServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_endpoint, "CACHE_S", 0.0)  # every scrape asks the sibling again
    async with worker_zero(tmp_path) as (base_url, endpoint):
        scraper = PageClient(base_url, origin="", headers={"Authorization": f"Bearer {TOKEN}"})
        for _ in range(ROUNDS):  # each scrape on a fresh connection, as Prometheus may make them
            answer = await scraper.request("GET", "/metrics")
            assert answer.status == 200 and 'gateway_active_calls{worker="1"}' in answer.text
        assert endpoint.fan_outs == sibling.requests == ROUNDS
        assert len(sibling.connections) == 1, f"{len(sibling.connections)} connections for {ROUNDS} scrapes"
    assert await sibling.all_closed(), "the pooled connection outlived the application"


async def test_calls_refused_while_the_engine_is_full_share_one_probe_connection(
        make_gateway: GatewayFactory) -> None:
    engine = CountingServer()
    full = web.json_response({"status": "ok", "sessions": 8, "max_sessions": 8})
    port = free_port()
    async with serve(engine.counted(full), port):
        gateway = await make_gateway(upstream="local", engine_port=port)
        page = PageClient(gateway.url)
        minted = await page.mint()
        assert minted.status == 200, minted.text
        sdp = await offer_sdp()
        for _ in range(ROUNDS):  # the secret is not spent by a refusal: the page may retry with it
            answer = await page.offer(sdp, minted.json()["value"])
            assert (answer.status, answer.code, answer.headers.get("Retry-After")) == (503, "engine_busy", "2")
        assert engine.requests == ROUNDS
        assert len(engine.connections) == 1, f"{len(engine.connections)} connections for {ROUNDS} probes"
        await gateway.stop()
        assert await engine.all_closed(), "the probe's connection outlived the gateway"
