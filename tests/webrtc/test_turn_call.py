"""Calls through the gateway and a real coturn: both peers relay-only, and refused credentials."""

from __future__ import annotations

import json
import re
import time

import aiohttp
import pytest
from aiortc import RTCConfiguration

from gateway.config import IceServer
from gateway.webrtc.ice import selected_route
from gateway.webrtc.turn_credentials import browser_ice_servers, mint
from tests.audio_tools import active_segments, pitch
from tests.conftest import GatewayFactory
from tests.fake_upstream import FakeRealtimeServer
from tests.peers import ClientPeer
from tests.server.test_call import SPEECH_PITCH, speak
from tests.server.test_call_lifecycle import until
from tests.turn_server import TurnServer, turn_server  # noqa: F401


async def test_relay_only_call_carries_audio_both_ways(make_gateway: GatewayFactory, fake_upstream: FakeRealtimeServer,
                                                       turn_server: TurnServer) -> None:  # noqa: F811
    gateway = await make_gateway(ice_servers=(IceServer(turn_server.url),), turn_secret=turn_server.secret,
                                 ice_transport_policy="relay")
    peer = ClientPeer(gateway.url, relay_only=True)
    try:
        await peer.connect()
        (turn_entry,) = peer.secret["ice_servers"]
        assert turn_entry["urls"] == [turn_server.url] and turn_server.secret not in str(peer.secret)
        session_id = peer.secret["session"]["id"]
        assert turn_entry["username"].endswith(f":{session_id}")
        await peer.channel_open()
        await peer.wait_for("session.created")
        sent_at = await speak(peer)
        await peer.wait_for("output_audio_buffer.stopped", timeout=20)
        # Mic audio crossed the relay to the upstream, reply audio crossed it back.
        assert pitch(fake_upstream.sessions[-1].received[24000:], 24000) == pytest.approx(SPEECH_PITCH, rel=0.05)
        reply = peer.heard_between(sent_at)
        start, end = max(active_segments(reply, 48000), key=lambda s: s[1] - s[0])
        assert end - start > 1.0
        assert pitch(reply[int(start * 48000):int(end * 48000)], 48000) == pytest.approx(220.0, rel=0.05)
        (call,) = gateway.state.calls
        assert selected_route(peer.pc) == selected_route(call.pc) == "relay/relay"
        log = turn_server.log_text()
        assert log.count("ALLOCATE processed, success") >= 2  # one allocation per peer
        assert "CHANNEL_BIND processed, success" in log or "CREATE_PERMISSION processed, success" in log
    finally:
        await peer.close()
    # coturn's own accounting once the allocations are gone: the browser's relay session carried
    # seconds of 50 packets/s audio each way (the call above lasted well over two seconds).
    def relayed() -> dict[str, int]:
        return next((u for user, u in turn_server.usage().items() if user.endswith(f":{session_id}")), {})

    await until(lambda: relayed().get("rp", 0) > 100 and relayed().get("sp", 0) > 100, timeout=15)


async def mint_and_offer(gateway_url: str, sdp: str | None = None,
                         peer: ClientPeer | None = None) -> tuple[dict, int, str]:
    """Mint a client secret, POST an offer (``peer``'s own, or ``sdp``): (secret, status, body)."""
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{gateway_url}/v1/realtime/client_secrets", json={}) as response:
            secret = await response.json()
        if peer is not None:
            await peer.pc.setLocalDescription(await peer.pc.createOffer())
            sdp = peer.pc.localDescription.sdp
        async with http.post(f"{gateway_url}/v1/realtime/calls", data=sdp,
                             headers={"Content-Type": "application/sdp",
                                      "Authorization": f"Bearer {secret['value']}"}) as response:
            return secret, response.status, await response.text()


async def test_expired_browser_credentials_are_refused_at_once_with_the_cause(
        make_gateway: GatewayFactory, turn_server: TurnServer) -> None:  # noqa: F811
    """The page holds TURN credentials that expired: its relay is refused, so a relay-only browser
    offers no candidate at all. The client hears why at once, not after the ICE timeout."""
    gateway = await make_gateway(ice_servers=(IceServer(turn_server.url),), turn_secret=turn_server.secret,
                                 ice_transport_policy="relay")
    expired = lambda identity, token_expires_at=None: browser_ice_servers(  # noqa: E731
        [turn_server.url], mint(turn_server.secret, identity, 600, clock=lambda: time.time() - 7200))
    gateway.state.ice.for_browser = expired  # type: ignore[method-assign]
    peer = ClientPeer(gateway.url, relay_only=True)
    started = time.monotonic()
    try:
        with pytest.raises(AssertionError, match="no_ice_candidates") as refused:
            await peer.connect()
        assert time.monotonic() - started < 3
        assert "expired or forged" in str(refused.value) and "new client secret" in str(refused.value)
    finally:
        await peer.close()
    assert len(gateway.state.calls) == 0
    assert turn_server.refused(peer.secret["session"]["id"])  # coturn saw and refused the browser's try
    assert gateway.state.ice.health[turn_server.url] is None  # the TURN server is not blamed


async def test_a_relay_only_gateway_whose_turn_refuses_it_answers_503_at_once(
        make_gateway: GatewayFactory, turn_server: TurnServer) -> None:  # noqa: F811
    gateway = await make_gateway(ice_servers=(IceServer(turn_server.url),), turn_secret="not-the-coturn-secret",
                                 ice_transport_policy="relay")
    peer = ClientPeer(gateway.url)
    started = time.monotonic()
    try:
        _, status, body = await mint_and_offer(gateway.url, peer=peer)
    finally:
        await peer.close()
    assert time.monotonic() - started < 4
    error = json.loads(body)["error"]
    assert status == 503 and error["code"] == "relay_unavailable"
    assert turn_server.url in error["message"] and "401" in error["message"]
    assert len(gateway.state.calls) == 0


async def test_a_call_no_path_reaches_ends_with_the_likely_cause(
        make_gateway: GatewayFactory, turn_server: TurnServer, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    """A browser behind a firewall whose relay failed: it offers one host candidate nobody can
    reach. The call ends at ICE_CONNECT_TIMEOUT, the log says why, nothing stays behind."""
    gateway = await make_gateway(ice_servers=(IceServer(turn_server.url),), turn_secret=turn_server.secret,
                                 ice_connect_timeout_s=2)
    peer = ClientPeer(gateway.url, configuration=RTCConfiguration(iceServers=[]))
    try:
        await peer.pc.setLocalDescription(await peer.pc.createOffer())
        unreachable = "\r\n".join(
            line if not line.startswith("a=candidate:") else re.sub(r" \S+ (\d+) typ host", " 198.51.100.7 \\1 typ host",
                                                                     line)
            for line in peer.pc.localDescription.sdp.split("\r\n"))
        assert "198.51.100.7" in unreachable
        started = time.monotonic()
        _, status, _ = await mint_and_offer(gateway.url, sdp=unreachable)
        assert status == 201
        await until(lambda: len(gateway.state.calls) == 0, timeout=8)
        assert time.monotonic() - started < 2 + 3
    finally:
        await peer.close()
    assert gateway.state.calls.recent[-1][1].reason == "ice_timeout"
    (line,) = [r.getMessage() for r in caplog.records if "ICE did not connect" in r.getMessage()]
    assert "browser offered no relay candidate" in line and re.search(r"browser candidates \d+ host\)", line)
