"""Calls through the gateway and a real coturn: both peers relay-only, and refused credentials."""

from __future__ import annotations

import time

import pytest

from gateway.config import IceServer
from gateway.ice import selected_route
from gateway.turn_credentials import browser_ice_servers, mint

from .audio_tools import active_segments, pitch
from .conftest import GatewayFactory
from .fake_upstream import FakeRealtimeServer
from .peers import ClientPeer
from .test_call import SPEECH_PITCH, speak
from .test_call_lifecycle import until
from .turn_server import TurnServer, turn_server  # noqa: F401


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
        (call,) = gateway.state.calls._calls.values()
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


async def test_expired_browser_credentials_end_the_call_fast_and_clearly(
        make_gateway: GatewayFactory, turn_server: TurnServer, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    """The page holds credentials that expired: its relay is refused, so a relay-only browser has
    no candidate at all. The gateway's own relay works; the call must still end within the ICE
    timeout, with a log line, and leave nothing behind."""
    gateway = await make_gateway(ice_servers=(IceServer(turn_server.url),), turn_secret=turn_server.secret,
                                 ice_transport_policy="relay", ice_connect_timeout_s=3)
    expired = lambda identity, token_expires_at=None: browser_ice_servers(  # noqa: E731
        [turn_server.url], mint(turn_server.secret, identity, 600, clock=lambda: time.time() - 7200))
    gateway.state.ice.for_browser = expired  # type: ignore[method-assign]
    peer = ClientPeer(gateway.url, relay_only=True)
    started = time.monotonic()
    try:
        await peer.connect()
        await until(lambda: len(gateway.state.calls) == 0, timeout=10)
        assert time.monotonic() - started < 3 + 4
        assert peer.pc.connectionState != "connected"
    finally:
        await peer.close()
    call_id, summary = gateway.state.calls.recent[-1]
    assert summary.reason == "ice_timeout"
    assert any("ICE did not connect" in r.getMessage() for r in caplog.records)
    assert turn_server.refused(peer.secret["session"]["id"])  # coturn saw and refused the browser's try
