"""/metrics is the operator's: loopback only by default, or whoever holds METRICS_TOKEN; with
several workers one scrape merges them all, and scrapes arriving together share one fan-out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
from aiohttp import web

from gateway.server.client_identity import TrustedProxies, identity_middleware
from gateway.server.forwarding import Forwarder
from gateway.server.metrics import GatewayMetrics
from gateway.server.metrics_endpoint import CACHE_S, MetricsEndpoint
from tests.conftest import GatewayFactory
from tests.fake_upstream import FakeRealtimeServer
from tests.server.page_client import PageClient, start_gateway_process
from tests.server.test_signaling import expect_error

TOKEN = "metrics-token-0123456789"
REMOTE = {"X-Forwarded-For": "203.0.113.7"}  # a client on the internet, named by the trusted proxy


@asynccontextmanager
async def worker_zero(runtime_dir: Path) -> AsyncIterator[tuple[str, MetricsEndpoint]]:
    """Worker 0's ``/metrics`` (behind :data:`TOKEN`) with its own :class:`Forwarder` towards the
    siblings in ``runtime_dir``, wired as ``create_app`` wires them, served on loopback:
    (its base URL, the endpoint). The forwarder's connections close with the application."""
    forwarder = Forwarder()
    endpoint = MetricsEndpoint(GatewayMetrics(worker="0"), forwarder, token=TOKEN, worker=0, runtime_dir=runtime_dir)
    app = web.Application(middlewares=[identity_middleware(TrustedProxies([]))])
    app.router.add_get("/metrics", endpoint.handle)
    app.cleanup_ctx.append(forwarder.context)
    front = web.AppRunner(app)
    await front.setup()
    await web.TCPSite(front, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{front.addresses[0][1]}", endpoint
    finally:
        await front.cleanup()


async def test_without_a_token_only_loopback_may_scrape(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(trusted_proxies=("127.0.0.1/32",))
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{gateway.url}/metrics", headers=REMOTE) as r:
            await expect_error(r, 403, "metrics_forbidden")
        async with http.get(f"{gateway.url}/metrics", headers={"X-Forwarded-For": "127.0.0.1"}) as r:
            assert r.status == 200 and "gateway_active_calls" in await r.text()
        async with http.get(f"{gateway.url}/metrics") as r:  # the proxy host itself, e.g. a local Prometheus
            assert r.status == 200


async def test_with_a_token_everyone_needs_it(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(trusted_proxies=("127.0.0.1/32",), metrics_token=TOKEN)
    async with aiohttp.ClientSession() as http:
        for headers in ({}, REMOTE, {**REMOTE, "Authorization": "Bearer wrong-token-0123456789"},
                        {"Authorization": TOKEN}):
            async with http.get(f"{gateway.url}/metrics", headers=headers) as r:
                await expect_error(r, 401, "invalid_metrics_token")
                assert r.headers["WWW-Authenticate"] == "Bearer"
        async with http.get(f"{gateway.url}/metrics", headers={**REMOTE, "Authorization": f"Bearer {TOKEN}"}) as r:
            assert r.status == 200 and "gateway_active_calls" in await r.text()


async def test_two_workers_merged_behind_the_token(fake_upstream: FakeRealtimeServer, tmp_path: Path) -> None:
    gateway = await start_gateway_process(fake_upstream, tmp_path, "--metrics-token", TOKEN,
                                          "--trusted-proxies", "127.0.0.1/32")
    try:
        scraper = PageClient(gateway.url, origin="", headers={**REMOTE, "Authorization": f"Bearer {TOKEN}"})
        stranger = PageClient(gateway.url, origin="", headers=REMOTE)
        for _ in range(6):  # fresh connections: both workers answer
            answer = await scraper.request("GET", "/metrics")
            assert answer.status == 200
            assert 'gateway_active_calls{worker="0"}' in answer.text and 'gateway_active_calls{worker="1"}' in answer.text
            refused = await stranger.request("GET", "/metrics")
            assert (refused.status, refused.code) == (401, "invalid_metrics_token")
    finally:
        assert gateway.stop() == 0


async def test_scrapes_share_one_fan_out_per_second(tmp_path: Path) -> None:
    """Worker 0 answering, worker 1 a stub that counts how often it is asked."""
    asked = 0

    async def other_worker(request: web.Request) -> web.Response:
        nonlocal asked
        asked += 1
        await asyncio.sleep(0.05)
        return web.Response(body=GatewayMetrics(worker="1").render(), content_type="text/plain")

    stub = web.Application()
    stub.router.add_get("/metrics", other_worker)
    runner = web.AppRunner(stub)
    await runner.setup()
    await web.UnixSite(runner, str(tmp_path / "worker-1.sock")).start()
    try:
        async with worker_zero(tmp_path) as (base_url, endpoint), \
                aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            async def scrape() -> str:
                async with http.get(f"{base_url}/metrics") as r:
                    assert r.status == 200
                    return await r.text()

            texts = await asyncio.gather(*(scrape() for _ in range(20)))  # a burst of scrapers
            assert asked == 1 and endpoint.fan_outs == 1
            assert all('gateway_active_calls{worker="1"}' in text for text in texts)
            await scrape()
            assert asked == 1  # still cached
            await asyncio.sleep(CACHE_S + 0.1)
            await scrape()
            assert asked == 2  # and fresh again after CACHE_S
    finally:
        await runner.cleanup()
