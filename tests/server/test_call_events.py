"""The ``oai-events`` data channel through a call: ordering, policy, barge-in by the client."""

from __future__ import annotations

import asyncio

from tests.conftest import GatewayFactory, RunningGateway
from tests.fake_upstream import FakeRealtimeServer
from tests.peers import ClientPeer
from tests.server.test_call import connected, speak


async def test_session_update_before_session_created(make_gateway: GatewayFactory,
                                                     fake_upstream: FakeRealtimeServer) -> None:
    fake_upstream.behaviour.session_created_delay = 1.0
    gateway = await make_gateway()
    peer = ClientPeer(gateway.url)
    try:
        await peer.connect()
        await peer.channel_open()
        assert not peer.of_type("session.created")
        peer.send({"type": "session.update", "event_id": "evt_early",
                   "session": {"type": "realtime", "instructions": "Responda em uma frase."}})
        created = await peer.wait_for("session.created", timeout=5)
        updated = await peer.wait_for("session.updated", timeout=5)
        assert peer.events.index(created) < peer.events.index(updated)
        assert updated["session"]["instructions"] == "Responda em uma frase."
        # Our own configuration's acknowledgement is folded into session.created.
        assert len(peer.of_type("session.updated")) == 1
        assert created["session"]["audio"]["input"]["turn_detection"]["silence_duration_ms"] == 600
        upstream_updates = fake_upstream.sessions[-1].events_of("session.update")
        assert [u.get("event_id") for u in upstream_updates][1] == "evt_early"
    finally:
        await peer.close()


async def test_policy_refusal_and_bad_events_keep_the_call(gateway: RunningGateway,
                                                          fake_upstream: FakeRealtimeServer) -> None:
    peer = await connected(gateway)
    try:
        # A locked field in a session.update is kept, the rest applied: never an error (issue 14).
        peer.send({"type": "session.update", "event_id": "evt_model",
                   "session": {"type": "realtime", "model": "gpt-4o-realtime-preview"}})
        updated = await peer.wait_for("session.updated")
        assert updated["session"]["model"] == gateway.config.model
        # A per-response override of one is refused, naming it (issue 13).
        peer.send({"type": "response.create", "event_id": "evt_format",
                   "response": {"audio": {"output": {"format": {"type": "audio/pcmu"}}}}})
        error = await peer.wait_for("error", where=lambda e: e["error"]["event_id"] == "evt_format")
        assert error["error"]["code"] == "session_field_locked"
        assert error["error"]["param"] == "response.audio.output.format"

        peer.channel.send("{nope")
        await peer.wait_for("error", where=lambda e: e["error"]["code"] == "invalid_json")
        peer.send({"type": "input_audio_buffer.append", "event_id": "evt_append", "audio": ""})
        error = await peer.wait_for("error", where=lambda e: e["error"]["event_id"] == "evt_append")
        assert "WebRTC media" in error["error"]["message"]
        peer.send({"type": "made.up", "event_id": "evt_unknown"})
        await peer.wait_for("error", where=lambda e: e["error"]["event_id"] == "evt_unknown")

        # Nothing refused reached the upstream (the session.update went without its model); the call works.
        sent_types = {e["type"] for e in fake_upstream.sessions[-1].client_events}
        assert sent_types == {"session.update"}
        assert [u["session"].get("model") for u in fake_upstream.sessions[-1].events_of("session.update")] == [
            gateway.config.model, None]
        mark = len(peer.events)
        peer.send({"type": "session.update", "event_id": "evt_ok",
                   "session": {"type": "realtime", "instructions": "Olá"}})
        await peer.wait_for("session.updated", after=mark)
        await speak(peer)
        await peer.wait_for("output_audio_buffer.started", timeout=10)
    finally:
        await peer.close()


async def test_client_clear_interrupts_playback(gateway: RunningGateway, fake_upstream: FakeRealtimeServer) -> None:
    fake_upstream.behaviour.reply_seconds = 6.0
    fake_upstream.behaviour.speed = 1.5  # the response is still generating when the user interrupts
    peer = await connected(gateway)
    try:
        await speak(peer)
        started = await peer.wait_for("output_audio_buffer.started", timeout=10)
        await asyncio.sleep(0.8)
        mark = len(peer.events)
        peer.send({"type": "output_audio_buffer.clear", "event_id": "evt_clear"})
        cleared = await peer.wait_for("output_audio_buffer.cleared", after=mark, timeout=2)
        assert cleared["response_id"] == started["response_id"]
        done = await peer.wait_for("response.done", after=mark, timeout=5)
        assert done["response"]["status"] == "cancelled"
        truncated = await peer.wait_for("conversation.item.truncated", after=mark, timeout=5)
        assert 500 <= truncated["audio_end_ms"] <= 1200
        session = fake_upstream.sessions[-1]
        assert len(session.events_of("response.cancel")) == 1
        assert not peer.of_type("error"), peer.of_type("error")
        assert not peer.of_type("output_audio_buffer.stopped")
    finally:
        await peer.close()


async def test_client_cancel_before_audio_deletes_the_item(make_gateway: GatewayFactory,
                                                           fake_upstream: FakeRealtimeServer) -> None:
    fake_upstream.behaviour.speed = 1.0
    gateway = await make_gateway(playout_delay_ms=300)  # what played is still in the browser's buffer
    peer = await connected(gateway)
    try:
        await speak(peer)
        await peer.wait_for("output_audio_buffer.started", timeout=10)
        mark = len(peer.events)
        peer.send({"type": "response.cancel", "event_id": "evt_cancel"})  # ~0 ms heard: nothing to keep
        deleted = await peer.wait_for("conversation.item.deleted", after=mark, timeout=5)
        session = fake_upstream.sessions[-1]
        assert [e["event_id"] for e in session.events_of("response.cancel")] == ["evt_cancel"]
        assert session.events_of("conversation.item.delete")[0]["item_id"] == deleted["item_id"]
        await peer.wait_for("output_audio_buffer.cleared", after=mark)
    finally:
        await peer.close()
