"""The official OpenAI Agents SDK's connection, replayed exactly, against a gateway with default
settings (issue 14): its first ``session.update`` carries its own default ``model`` and the
audio formats — fields the gateway locks — and must apply without an ``error`` (the SDK turns
any ``error`` into a session error), with the call answering afterwards.

The events are the SDK's own (see ``tests/data/agents_sdk_session_update.md`` for where they
come from): the first one the moment the data channel opens, before ``session.created``; the
tracing one when ``session.created`` arrives.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np

from gateway.config import Config
from gateway.core.conversation import Conversation
from gateway.core.policy import SessionPolicy
from gateway.engine.session import EngineSession
from tests.audio_tools import active_segments, pitch
from tests.conftest import GatewayFactory
from tests.fake_upstream import FakeRealtimeServer
from tests.peers import ClientPeer
from tests.server.test_call import speak
from tests.server.test_workers import start_workers

FIRST_EVENT = json.loads((Path(__file__).parents[1] / "data" / "agents_sdk_session_update.json").read_text())
ON_SESSION_CREATED = {"type": "session.update", "session": {"type": "realtime", "tracing": "auto"}}


async def connect_like_the_sdk(peer: ClientPeer) -> dict[str, Any]:
    """Open the call, send the SDK's events when the SDK sends them; the ``session.updated``
    that resolves the SDK's ``connect()``."""
    await peer.connect()
    await peer.channel_open()
    peer.send(FIRST_EVENT)
    await peer.wait_for("session.created", timeout=10)
    peer.send(ON_SESSION_CREATED)
    return await peer.wait_for("session.updated", timeout=10)


async def talk_and_listen(peer: ClientPeer, reply_pitch_hz: float) -> None:
    mark = len(peer.events)
    await speak(peer)
    await peer.wait_for("output_audio_buffer.started", after=mark, timeout=10)
    await peer.wait_for("output_audio_buffer.stopped", after=mark, timeout=15)
    await asyncio.sleep(0.3)
    heard = np.concatenate([pcm for _, pcm in peer.heard])
    longest = max(active_segments(heard, 48000), key=lambda s: s[1] - s[0])
    assert longest[1] - longest[0] >= 1.5  # the fake's 2 s reply reached the browser's speaker
    reply = heard[int(longest[0] * 48000):int(longest[1] * 48000)]
    assert abs(pitch(reply, 48000) - reply_pitch_hz) < 0.03 * reply_pitch_hz


async def test_the_agents_sdk_connects_to_a_default_gateway(make_gateway: GatewayFactory,
                                                            fake_upstream: FakeRealtimeServer) -> None:
    gateway = await make_gateway()  # LOCKED_SESSION_FIELDS at its default: model
    assert gateway.config.locked_session_fields == ("model",)
    peer = ClientPeer(gateway.url)
    try:
        updated = await connect_like_the_sdk(peer)
        # The effective session: the SDK's settings applied, the gateway's model and formats kept.
        session = updated["session"]
        assert session["model"] == gateway.config.model != FIRST_EVENT["session"]["model"]
        assert session["instructions"] == "You are a helpful assistant."
        audio_in = session["audio"]["input"]
        assert audio_in["turn_detection"]["type"] == "semantic_vad"
        assert audio_in["transcription"]["model"] == "gpt-4o-mini-transcribe"
        assert audio_in["noise_reduction"] is None
        assert audio_in["format"] == session["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}
        assert session["audio"]["output"]["speed"] == 1
        await peer.wait_for("session.updated", after=peer.events.index(updated) + 1)  # the tracing update
        await talk_and_listen(peer, fake_upstream.behaviour.reply_pitch_hz)
        assert not peer.of_type("error"), peer.of_type("error")
        upstream = fake_upstream.sessions[-1]
        forwarded = upstream.events_of("session.update")[1:]  # after the gateway's own configuration
        assert [u["session"].get("tracing") for u in forwarded] == [None, "auto"]
        assert "model" not in forwarded[0]["session"]
    finally:
        await peer.close()


async def test_the_agents_sdk_connects_through_two_workers(fake_upstream: FakeRealtimeServer, tmp_path: Path) -> None:
    url, process = await start_workers(fake_upstream, tmp_path, "--max-calls-per-client", "16")
    peers: list[ClientPeer] = []
    try:
        # The kernel spreads fresh connections over the workers at random: four calls land on one
        # worker one time in eight, so more are made (four at a time, up to 16) until both have one.
        while len(peers) < 16 and {p.location.split("_")[1] for p in peers} != {"w0", "w1"}:
            batch = [ClientPeer(url) for _ in range(4)]
            peers += batch
            for updated in await asyncio.gather(*(connect_like_the_sdk(p) for p in batch)):
                assert updated["session"]["model"] == Config().model
        assert {p.location.split("_")[1] for p in peers} == {"w0", "w1"}, [p.location for p in peers]
        await talk_and_listen(peers[0], fake_upstream.behaviour.reply_pitch_hz)
        for peer in peers:
            assert not peer.of_type("error"), peer.of_type("error")
    finally:
        await asyncio.gather(*(p.close() for p in peers))
        process.terminate()
        assert process.wait(40) == 0


def test_the_offline_engine_accepts_what_the_gateway_forwards() -> None:
    """The local engine gets the SDK's events as the gateway forwards them and answers each
    with ``session.updated``, never an ``error``."""
    config = Config(upstream="local")
    conversation = Conversation(config.default_session(), SessionPolicy.from_fields(config.locked_session_fields))
    engine = EngineSession()
    conversation.upstream_opened()
    for event in conversation.data_to_upstream():
        engine.handle(event)
    for event in engine.outbox:
        conversation.receive_upstream(event, 0.0)
    engine.outbox.clear()
    for event in (FIRST_EVENT, ON_SESSION_CREATED):
        conversation.receive_client(json.dumps(event), 0.0)
        (forwarded,) = conversation.data_to_upstream()
        engine.handle(forwarded)
        assert [e["type"] for e in engine.outbox] == ["session.updated"], engine.outbox
        engine.outbox.clear()
    assert engine.session["audio"]["input"]["turn_detection"] == {"type": "semantic_vad"}
    assert engine.session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
