"""The call survives its upstream: crashes and hangs are reconnected, long sessions rolled over,
and the new session is given the conversation so far."""

from __future__ import annotations

import asyncio
import time

from tests.conftest import GatewayFactory
from tests.fake_upstream import FakeRealtimeServer
from tests.server.test_call import connected, speak
from tests.server.test_call_lifecycle import until


def replayed(session) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return [(e["item"]["role"], e["item"]["content"][0]["text"]) for e in session.events_of("conversation.item.create")]


async def test_a_crashed_upstream_is_reconnected_mid_reply(make_gateway: GatewayFactory,
                                                           fake_upstream: FakeRealtimeServer) -> None:
    fake_upstream.behaviour.reply_seconds = 4.0
    fake_upstream.behaviour.speed = 1.0
    gateway = await make_gateway()
    peer = await connected(gateway)
    try:
        await speak(peer)
        started = await peer.wait_for("output_audio_buffer.started", timeout=10)
        await asyncio.sleep(0.5)
        mark = len(peer.events)
        dropped_at = time.monotonic()
        fake_upstream.drop_connections()
        error = await peer.wait_for("error", after=mark, timeout=5)
        assert error["error"]["code"] == "upstream_reconnecting"
        done = await peer.wait_for("response.done", after=mark, timeout=5)
        assert done["response"]["id"] == started["response_id"] and done["response"]["status"] == "failed"
        await peer.wait_for("session.updated", after=mark, timeout=10)  # back, with the same session
        gap = time.monotonic() - dropped_at
        assert gap < 2.0
        assert len(fake_upstream.sessions) == 2
        restored = fake_upstream.sessions[1]
        assert restored.client_events[0]["type"] == "session.update"
        assert replayed(restored)[0] == ("user", fake_upstream.behaviour.user_transcript)
        assert replayed(restored)[1][0] == "assistant" and replayed(restored)[1][1]  # what arrived of it
        # The call goes on: the next turn is answered by the new session.
        mark = len(peer.events)
        await speak(peer)
        # (the failed reply's own stopped may come after the mark: what had arrived of it plays out)
        await peer.wait_for("output_audio_buffer.stopped", after=mark, timeout=15,
                            where=lambda e: e["response_id"] != started["response_id"])
        assert restored.turns == 1
    finally:
        await peer.close()


async def test_a_hung_upstream_is_noticed_and_replaced(make_gateway: GatewayFactory,
                                                        fake_upstream: FakeRealtimeServer) -> None:
    gateway = await make_gateway(upstream_ping_s=0.5)
    peer = await connected(gateway)
    try:
        mark = len(peer.events)
        fake_upstream.freeze()
        error = await peer.wait_for("error", after=mark, timeout=5)
        assert error["error"]["code"] == "upstream_reconnecting"
        await peer.wait_for("session.updated", after=mark, timeout=10)
        await speak(peer)
        await peer.wait_for("output_audio_buffer.stopped", after=mark, timeout=15)
    finally:
        await peer.close()


async def test_long_sessions_roll_over_unnoticed(make_gateway: GatewayFactory, fake_upstream: FakeRealtimeServer) -> None:
    gateway = await make_gateway(upstream_session_max_s=5)
    peer = await connected(gateway)
    try:
        await speak(peer)
        await peer.wait_for("output_audio_buffer.stopped", timeout=15)
        await until(lambda: len(fake_upstream.sessions) == 2, timeout=10)
        await until(lambda: len(replayed(fake_upstream.sessions[1])) == 2, timeout=5)
        mark = len(peer.events)
        await speak(peer)
        await peer.wait_for("output_audio_buffer.stopped", after=mark, timeout=15)
        # Invisible to the client: no error, no second session.created, nothing about it at all.
        assert not peer.of_type("error")
        assert len(peer.of_type("session.created")) == 1 and not peer.of_type("session.updated")
        assert fake_upstream.sessions[1].turns == 1
    finally:
        await peer.close()


async def test_an_upstream_that_stays_down_ends_the_call(make_gateway: GatewayFactory,
                                                          fake_upstream: FakeRealtimeServer) -> None:
    gateway = await make_gateway(upstream_reconnect_timeout_s=1.5)
    peer = await connected(gateway)
    try:
        fake_upstream.behaviour.api_key = "sk-rotated"  # every reconnect is now refused (401: fatal)
        fake_upstream.drop_connections()
        error = await peer.wait_for("error", where=lambda e: e["error"]["code"] == "invalid_api_key", timeout=10)
        assert "API key" in error["error"]["message"]
        await until(lambda: len(gateway.state.calls) == 0)
    finally:
        await peer.close()
