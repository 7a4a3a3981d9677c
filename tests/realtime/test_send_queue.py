"""The upstream send queue is bounded (issue 13): while the socket is stalled or being reopened,
mic audio past the backstop is dropped and events past the bound are refused with an ``error``
to the client that echoes their ``event_id`` — memory never grows with the outage."""

from __future__ import annotations

import asyncio
import json

from gateway.core.call_state import CallLimits, CallState
from gateway.core.conversation import Conversation
from gateway.core.events import append_message, dumps
from gateway.core.policy import SessionPolicy
from gateway.realtime.upstream_link import MAX_QUEUED_AUDIO, UpstreamLink
from gateway.server.metrics import GatewayMetrics
from tests.conftest import gateway_config
from tests.schema import server_event_problem


def link(**overrides: object) -> UpstreamLink:
    config = gateway_config(**overrides)
    conversation = Conversation(config.default_session(), SessionPolicy.from_fields(config.locked_session_fields))
    return UpstreamLink(config, conversation, GatewayMetrics(), on_event=lambda event: None, on_flush=lambda: None)


class StalledUpstream:
    """An upstream socket whose sends block until released, recording what got through."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.released = asyncio.Event()

    async def send_text(self, message: str) -> None:
        await self.released.wait()
        self.sent.append(message)


def test_events_past_the_bound_are_refused_with_an_error() -> None:
    upstream_link = link(upstream_max_queued_events=16)
    conversation = upstream_link._conversation
    accepted = [upstream_link.send(dumps({"type": "response.create", "event_id": f"evt_{n}"})) for n in range(20)]
    assert accepted == [True] * 16 + [False] * 4
    assert upstream_link.queue.qsize() == 16 and upstream_link.refused_events == 4
    errors = conversation.data_to_client()
    assert [e["error"]["event_id"] for e in errors] == ["evt_16", "evt_17", "evt_18", "evt_19"]
    assert all(e["error"]["code"] == "upstream_backlog" and server_event_problem(e) is None for e in errors)


def test_events_past_the_byte_bound_are_refused() -> None:
    upstream_link = link(upstream_max_queued_bytes=128 * 1024)
    big = dumps({"type": "conversation.item.create", "event_id": "evt_big", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": "x" * 60_000}]}})
    assert [upstream_link.send(big) for _ in range(3)] == [True, True, False]
    assert upstream_link.queued_bytes == 2 * len(big) <= 128 * 1024
    (error,) = upstream_link._conversation.data_to_client()
    assert error["error"]["event_id"] == "evt_big"


def test_mic_audio_is_dropped_first_by_the_call_then_by_the_backstop() -> None:
    upstream_link = link()
    state = CallState(CallLimits(), now=0.0)
    frame = append_message(b"\0" * 960)
    sent_by_call = sum(state.mic_frame(upstream_link.queued_audio) and upstream_link.send(frame, audio=True)
                       for _ in range(1000))
    assert sent_by_call == CallLimits().max_backlog_audio and state.dropped_frames == 750
    direct = sum(upstream_link.send(frame, audio=True) for _ in range(1000))  # nothing in front of the link
    assert upstream_link.queued_audio == MAX_QUEUED_AUDIO == sent_by_call + direct
    assert upstream_link.dropped_audio == 1000 - direct
    assert upstream_link._conversation.data_to_client() == []  # mic audio is never an error


async def test_the_writer_drains_the_queue_and_frees_its_room() -> None:
    upstream_link = link(upstream_max_queued_events=16)
    for n in range(16):
        upstream_link.send(dumps({"type": "input_audio_buffer.commit", "event_id": f"evt_{n}"}))
        upstream_link.send(append_message(b"\0" * 960), audio=True)
    upstream = StalledUpstream()
    writer = asyncio.create_task(upstream_link._write(upstream))  # type: ignore[arg-type]
    try:
        await asyncio.sleep(0.05)  # the writer holds the first event, stuck in the stalled socket
        late = [upstream_link.send(dumps({"type": "input_audio_buffer.commit", "event_id": f"evt_late{n}"}))
                for n in range(3)]
        assert late == [True, False, False]  # the one it took made room for one
        upstream.released.set()
        for _ in range(100):
            if upstream_link.queue.empty():
                break
            await asyncio.sleep(0.01)
        assert len(upstream.sent) == 33
        assert (upstream_link.queued_events, upstream_link.queued_bytes, upstream_link.queued_audio) == (0, 0, 0)
        assert upstream_link.send(dumps({"type": "input_audio_buffer.commit", "event_id": "evt_again"}))
        await asyncio.sleep(0.05)
        assert json.loads(upstream.sent[-1])["event_id"] == "evt_again"
    finally:
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
