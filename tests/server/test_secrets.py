"""Secrets never leave the server: not in any HTTP answer, header, data-channel event or log line."""

from __future__ import annotations

import logging
from pathlib import Path

import aiohttp
import pytest

from gateway.config import IceServer
from tests.conftest import GatewayFactory
from tests.fake_upstream import FakeRealtimeServer
from tests.peers import ClientPeer
from tests.server.test_call import turn

UPSTREAM_KEY = "sk-test-upstream-key"
TURN_SECRET = "turn-shared-secret-0123456789"
API_KEY = "gk_gateway_api_key_0123456789"


async def test_a_whole_call_never_shows_a_secret(make_gateway: GatewayFactory, fake_upstream: FakeRealtimeServer,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    gateway = await make_gateway(openai_api_key=UPSTREAM_KEY, turn_secret=TURN_SECRET, api_keys=(API_KEY,),
                                 ice_servers=(IceServer("stun:127.0.0.1:3478"), IceServer("turn:127.0.0.1:3478")),
                                 web_root=Path(__file__).resolve().parents[2] / "web")
    seen: list[str] = []
    async with aiohttp.ClientSession() as http:
        for method, path, kwargs in [
            ("GET", "/", {}), ("GET", "/app.js", {}), ("GET", "/healthz", {}), ("GET", "/metrics", {}),
            ("POST", "/v1/realtime/client_secrets", {"json": {}}),
            ("POST", "/v1/realtime/client_secrets", {"json": {}, "headers": {"Authorization": f"Bearer {API_KEY}"}}),
            ("POST", "/v1/realtime/calls", {"data": "v=0", "headers": {"Content-Type": "application/sdp",
                                                                       "Authorization": "Bearer ek_nope"}}),
        ]:
            async with http.request(method, f"{gateway.url}{path}", **kwargs) as response:
                seen += [await response.text(), str(dict(response.headers))]
    peer = ClientPeer(gateway.url)
    try:
        await peer.connect(mint_headers={"Authorization": f"Bearer {API_KEY}"})  # as an embedder's backend
        seen.append(str(peer.secret))
        await peer.channel_open()
        await peer.wait_for("session.created")
        await turn(peer)
        peer.send({"type": "response.create", "response": {"model": "x"}})  # a refusal, too
        await peer.wait_for("error")
        seen += [str(event) for event in peer.events]
        seen.append(peer.pc.remoteDescription.sdp)
    finally:
        await peer.close()
    gateway_logs = [r.getMessage() for r in caplog.records if not r.name.startswith("websockets.server")]  # not OpenAI's side
    everything = "\n".join(seen + gateway_logs)
    assert "ek_" in everything and "ice_servers" in everything  # the scan did see the traffic
    for secret in (UPSTREAM_KEY, TURN_SECRET, API_KEY[3:]):
        assert secret not in everything
