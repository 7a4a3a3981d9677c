"""A browser whose network changed brings its call back: same conversation, same upstream session."""

from __future__ import annotations

import time

from tests.conftest import GatewayFactory, RunningGateway
from tests.fake_upstream import FakeRealtimeServer
from tests.peers import ClientPeer
from tests.server.test_call import connected, speak
from tests.server.test_call_lifecycle import until
from tests.server.test_soak import vanish


async def test_resume_after_the_browser_vanished(gateway: RunningGateway, fake_upstream: FakeRealtimeServer) -> None:
    first = await connected(gateway)
    await speak(first)
    await first.wait_for("output_audio_buffer.stopped", timeout=15)
    token, location = first.resume_token, first.location
    assert token and token.startswith("rsm_")
    await vanish(first)
    (call,) = gateway.state.calls
    await until(lambda: call._state.suspended, timeout=6)  # noticed within PEER_TIMEOUT (2.5 s)
    second = ClientPeer(gateway.url)
    try:
        started = time.monotonic()
        assert await second.resume(token) == 201
        assert second.location == location and second.resume_token != token
        await second.channel_open()
        await speak(second)
        await second.wait_for("output_audio_buffer.stopped", timeout=15)
        assert time.monotonic() - started < 8
        assert len(fake_upstream.sessions) == 1  # the same upstream session carried on
        assert fake_upstream.sessions[0].turns == 2
        assert await ClientPeer(gateway.url).resume(token) == 401  # a used token is spent
    finally:
        await first.pc.close()
        await second.close()


async def test_a_resume_token_does_not_take_over_a_live_call(gateway: RunningGateway,
                                                               fake_upstream: FakeRealtimeServer) -> None:
    """A leaked token is no use while the browser is there: 409, and the call carries on."""
    first = await connected(gateway)
    second = ClientPeer(gateway.url)
    try:
        assert await second.resume(first.resume_token) == 409
        mark = len(first.events)
        await speak(first)
        await first.wait_for("output_audio_buffer.stopped", after=mark, timeout=15)
        (call,) = gateway.state.calls
        assert call.resumes == 0 and len(fake_upstream.sessions) == 1
    finally:
        await first.close()
        await second.pc.close()


async def test_a_call_not_resumed_within_the_grace_ends(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(resume_grace_s=1.0)
    peer = await connected(gateway)
    token = peer.resume_token
    await vanish(peer)
    await until(lambda: len(gateway.state.calls) == 0, timeout=8)
    assert [summary.reason for _, summary in gateway.state.calls.recent] == ["peer_gone"]
    late = ClientPeer(gateway.url)
    assert await late.resume(token) == 401
    await late.pc.close()
    await peer.pc.close()
