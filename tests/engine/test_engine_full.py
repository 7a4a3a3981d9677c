"""A call the offline engine has no session for is refused up front (503 ``engine_busy``), not
answered and then left without an upstream; once a session frees up, calls go through again."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import aiohttp
import pytest

from tests.conftest import ENGINE_TEST_KEY, gateway_config, start_gateway
from tests.peers import ClientPeer

from .client import EngineClient
from .test_engine_admission import MAX_SESSIONS

pytestmark = pytest.mark.engine


async def call_status(base_url: str) -> tuple[int, dict[str, object], str | None]:
    """Mint a secret and offer a call as a browser does; the HTTP status, JSON body, Retry-After."""
    peer = ClientPeer(base_url)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{base_url}/v1/realtime/client_secrets", json={}) as minted:
                secret = (await minted.json())["value"]
            await peer.pc.setLocalDescription(await peer.pc.createOffer())
            async with http.post(f"{base_url}/v1/realtime/calls", data=peer.pc.localDescription.sdp,
                                 headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {secret}"}) as r:
                body = await r.json(content_type=None) if r.status != 201 else {}
                return r.status, body, r.headers.get("Retry-After")
    finally:
        await peer.pc.close()


async def test_a_call_past_the_engines_sessions_is_refused_up_front(engine_url: str) -> None:
    gateway, runner = await start_gateway(gateway_config(upstream="local", engine_port=urlsplit(engine_url).port,
                                                         openai_api_key=None))
    others = [await EngineClient.open(engine_url, ENGINE_TEST_KEY) for _ in range(MAX_SESSIONS)]
    try:
        for other in others:
            await other.wait_for("session.created")
        status, body, retry_after = await call_status(gateway.url)
        error = body["error"]
        assert status == 503 and retry_after, (status, body)
        assert isinstance(error, dict) and error["code"] == "engine_busy" and "ENGINE_MAX_SESSIONS" in error["message"]
        assert len(gateway.state.calls) == 0  # nothing was accepted
        await others.pop().close()
        peer = ClientPeer(gateway.url)
        try:
            for _ in range(50):  # the engine notices the closed session within a moment
                try:
                    await peer.connect()
                    break
                except AssertionError as refused:
                    assert "engine_busy" in str(refused)
                    await asyncio.sleep(0.1)
            await peer.channel_open()
            created = await peer.wait_for("session.created", timeout=30)
            assert created["session"]["model"] and not peer.of_type("error")
        finally:
            await peer.close()
    finally:
        for other in others:
            await other.close()
        await runner.cleanup()
