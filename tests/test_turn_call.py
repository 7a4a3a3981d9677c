"""Calls through a real coturn: both peers relay-only, and expired credentials failing fast."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiortc import RTCPeerConnection

from gateway.config import IceServer

from .audio_tools import active_segments, pitch
from .conftest import GatewayFactory
from .fake_upstream import FakeRealtimeServer
from .peers import ClientPeer
from .test_call import SPEECH_PITCH, speak
from .test_call_lifecycle import until
from .turn_server import TurnServer, turn_server  # noqa: F401


def selected_pair(pc: RTCPeerConnection) -> tuple[str, str]:
    """(local, remote) candidate types of the pair ICE nominated."""
    transport = pc.getTransceivers()[0].receiver.transport.transport
    pair = next(iter(transport._connection._nominated.values()))
    return pair.local_candidate.type, pair.remote_candidate.type


async def test_relay_only_call_carries_audio_both_ways(make_gateway: GatewayFactory, fake_upstream: FakeRealtimeServer,
                                                       turn_server: TurnServer) -> None:  # noqa: F811
    gateway = await make_gateway(ice_servers=(IceServer(turn_server.url),), turn_secret=turn_server.secret,
                                 ice_transport_policy="relay")
    peer = ClientPeer(gateway.url, relay_only=True)
    try:
        await peer.connect()
        assert peer.secret["ice_servers"][0]["urls"] == [turn_server.url]
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
        assert selected_pair(peer.pc)[0] == "relay"
        assert selected_pair(call.pc) == ("relay", "relay")
        log = turn_server.log_text()
        assert log.count("ALLOCATE processed, success") >= 2  # one allocation per peer
        assert "CREATE_PERMISSION processed, success" in log or "CHANNEL_BIND processed, success" in log
    finally:
        await peer.close()
    await until(lambda: "usage: realm=<gateway.test>" in turn_server.log_text(), timeout=15)


async def test_expired_turn_credentials_fail_fast_and_clearly(make_gateway: GatewayFactory,
                                                              turn_server: TurnServer) -> None:  # noqa: F811
    gateway = await make_gateway(ice_servers=(IceServer(turn_server.url),), turn_secret=turn_server.secret,
                                 ice_transport_policy="relay", ice_connect_timeout_s=3)
    gateway.state.ice._clock = lambda: time.time() - 7200  # every credential minted now is long expired
    peer = ClientPeer(gateway.url, relay_only=True)
    started = time.monotonic()
    try:
        await peer.connect()
        await until(lambda: len(gateway.state.calls) == 0, timeout=10)
        assert time.monotonic() - started < 8
        assert peer.pc.connectionState != "connected"
    finally:
        await peer.close()
    log = turn_server.log_text()
    assert "401" in log or "Unauthorized" in log or "cannot find credentials" in log.lower()
