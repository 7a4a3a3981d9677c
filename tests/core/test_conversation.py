"""The sans-I/O conversation core, driven event by event (no sockets, no clock)."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import pytest

from gateway.config import Config
from gateway.core.conversation import Conversation, State
from gateway.core.policy import SessionPolicy
from tests.audio_tools import voiced
from tests.schema import client_event_problem, server_event_problem


def make(playout_delay_ms: int = 60, locked: tuple[str, ...] = ("model",)) -> Conversation:
    config = Config(openai_api_key="sk-x", upstream="openai")
    return Conversation(config.default_session(), SessionPolicy.from_fields(locked),
                        playout_delay_ms=playout_delay_ms)


def ready(conv: Conversation) -> None:
    conv.upstream_opened()
    conv.receive_upstream({"type": "session.created", "event_id": "event_c", "session": {}}, 0.0)
    conv.receive_upstream({"type": "session.updated", "event_id": "event_u", "session": conv.session}, 0.0)
    conv.data_to_upstream()
    conv.data_to_client()


def delta(response_id: str, item_id: str, ms: int) -> dict[str, Any]:
    pcm = voiced(ms / 1000, 200, 24000)
    return {"type": "response.output_audio.delta", "event_id": "e", "response_id": response_id,
            "item_id": item_id, "output_index": 0, "content_index": 0,
            "delta": base64.b64encode(pcm.tobytes()).decode()}


def start_response(conv: Conversation, response_id: str = "resp_1", item_id: str = "item_1", ms: int = 1000) -> None:
    conv.receive_upstream({"type": "response.created", "event_id": "e", "response": {"id": response_id}}, 0.0)
    conv.receive_upstream(delta(response_id, item_id, ms), 0.0)


def play(conv: Conversation, frames: int) -> list[np.ndarray]:
    return [conv.next_frame(float(i)) for i in range(frames)]


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def test_handshake_is_hidden_and_early_client_events_wait() -> None:
    conv = make()
    conv.receive_client(json.dumps({"type": "session.update", "event_id": "evt_1",
                                    "session": {"type": "realtime", "instructions": "x"}}), now=0.0)
    assert conv.data_to_upstream() == [] and conv.data_to_client() == []
    conv.upstream_opened()
    first = conv.data_to_upstream()
    assert types(first) == ["session.update"]
    assert first[0]["session"]["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert client_event_problem(first[0]) is None
    assert conv.state is State.CONFIGURING
    conv.receive_upstream({"type": "session.created", "event_id": "event_c", "session": {}}, 0.0)
    assert conv.data_to_client() == []
    conv.receive_upstream({"type": "session.updated", "event_id": "event_u", "session": {"voice": "v"}}, 0.0)
    to_client = conv.data_to_client()
    assert types(to_client) == ["session.created"] and to_client[0]["event_id"] == "event_c"
    assert to_client[0]["session"] == {"voice": "v"}
    assert [e.get("event_id") for e in conv.data_to_upstream()] == ["evt_1"]
    assert conv.state is State.READY


def test_rejected_initial_configuration_is_reported_and_the_call_goes_on() -> None:
    conv = make()
    conv.upstream_opened()
    update_id = conv.data_to_upstream()[0]["event_id"]
    conv.receive_upstream({"type": "error", "event_id": "e", "error": {
        "type": "invalid_request_error", "code": "invalid_value", "message": "bad voice", "event_id": update_id}}, 0)
    out = conv.data_to_client()
    assert types(out) == ["error", "session.created"]
    assert "bad voice" in out[0]["error"]["message"]
    assert conv.state is State.READY


@pytest.mark.parametrize("session,param", [
    ({"type": "transcription"}, "session.type"),
    ("not an object", "session"),
    ({"type": "realtime", "audio": {"input": "pcm16"}}, "session.audio.input"),
    ({"type": "realtime", "audio": ["x"]}, "session.audio"),
])
def test_policy_refuses_with_the_field_named(session: Any, param: str) -> None:
    conv = make()
    ready(conv)
    conv.receive_client(json.dumps({"type": "session.update", "event_id": "evt_x", "session": session}), now=0.0)
    out = conv.data_to_client()
    assert types(out) == ["error"] and out[0]["error"]["param"] == param
    assert out[0]["error"]["event_id"] == "evt_x"
    assert server_event_problem(out[0]) is None
    assert conv.data_to_upstream() == []


def test_locked_instructions_are_kept_and_the_rest_applied() -> None:
    conv = make(locked=("model", "instructions"))
    ready(conv)
    conv.receive_client(json.dumps({"type": "session.update", "event_id": "evt_i", "session": {
        "type": "realtime", "instructions": "y", "audio": {"output": {"voice": "marin"}}}}), now=0.0)
    assert conv.data_to_client() == []
    (update,) = conv.data_to_upstream()
    assert update["event_id"] == "evt_i"
    assert update["session"] == {"type": "realtime", "audio": {"output": {"voice": "marin"}}}


@pytest.mark.parametrize("message,code", [
    ("{", "invalid_json"), ("[]", "invalid_event"), ('{"type": 3}', "missing_type"),
    ('{"type": "x.y", "event_id": "e1"}', "invalid_event"),
])
def test_malformed_client_messages_get_errors(message: str, code: str) -> None:
    conv = make()
    ready(conv)
    conv.receive_client(message, now=0.0)
    out = conv.data_to_client()
    assert out[0]["error"]["code"] == code and server_event_problem(out[0]) is None


def test_audio_deltas_play_and_are_never_forwarded() -> None:
    conv = make()
    ready(conv)
    start_response(conv, ms=100)
    assert types(conv.data_to_client()) == ["response.created"]
    frames = play(conv, 6)
    assert all(len(f) == 960 for f in frames)
    assert sum(np.abs(f).sum() > 0 for f in frames) == 5  # 100 ms = five 20 ms frames, then silence
    assert types(conv.data_to_client()) == ["output_audio_buffer.started"]
    conv.receive_upstream({"type": "response.done", "event_id": "e", "response": {"id": "resp_1"}}, 0.0)
    play(conv, 1)
    assert types(conv.data_to_client()) == ["response.done", "output_audio_buffer.stopped"]


def test_stopped_waits_for_response_done_even_when_audio_underruns() -> None:
    conv = make()
    ready(conv)
    start_response(conv, ms=40)
    play(conv, 5)
    assert types(conv.data_to_client()) == ["response.created", "output_audio_buffer.started"]
    conv.receive_upstream(delta("resp_1", "item_1", 40), 0.0)
    play(conv, 2)
    conv.receive_upstream({"type": "response.done", "event_id": "e", "response": {"id": "resp_1"}}, 0.0)
    out = conv.data_to_client()
    assert types(out) == ["response.done", "output_audio_buffer.stopped"]


def test_barge_in_truncates_at_what_was_heard() -> None:
    conv = make(playout_delay_ms=60)
    ready(conv)
    start_response(conv, ms=3000)
    play(conv, 50)  # one second played
    conv.data_to_client()
    conv.receive_upstream({"type": "input_audio_buffer.speech_started", "event_id": "e",
                           "audio_start_ms": 100, "item_id": "item_u"}, 0.0)
    upstream = conv.data_to_upstream()
    assert types(upstream) == ["response.cancel", "conversation.item.truncate"]
    truncate = upstream[1]
    assert truncate["item_id"] == "item_1" and truncate["audio_end_ms"] == 1000 - 60
    assert all(client_event_problem(e) is None for e in upstream)
    assert types(conv.data_to_client()) == ["input_audio_buffer.speech_started", "output_audio_buffer.cleared"]
    assert not np.any(conv.next_frame(0.0)), "silence within one frame"
    # Late deltas of the cancelled response never play.
    conv.receive_upstream(delta("resp_1", "item_1", 500), 0.0)
    assert not np.any(conv.next_frame(0.0))
    # The upstream's own race error for our cancel is not shown to the user.
    conv.receive_upstream({"type": "error", "event_id": "e", "error": {
        "type": "invalid_request_error", "code": "response_cancel_not_active", "message": "no active response",
        "event_id": upstream[0]["event_id"]}}, 0.0)
    assert conv.data_to_client() == []


def test_truncate_is_clamped_to_the_audio_the_item_has() -> None:
    conv = make(playout_delay_ms=0)
    ready(conv)
    start_response(conv, ms=200)
    conv.receive_upstream({"type": "response.done", "event_id": "e", "response": {"id": "resp_1"}}, 0.0)
    start_response(conv, "resp_2", "item_2", ms=400)
    play(conv, 10)  # all 200 ms of item_1, then 0 of item_2 (responses never share a frame)
    play(conv, 5)  # 100 ms of item_2
    conv.receive_client('{"type": "output_audio_buffer.clear"}', now=0.0)
    truncates = [e for e in conv.data_to_upstream() if e["type"] == "conversation.item.truncate"]
    assert [(t["item_id"], t["audio_end_ms"]) for t in truncates] == [("item_2", 100)]


def test_barge_in_before_anything_was_heard_deletes_the_item() -> None:
    conv = make(playout_delay_ms=60)
    ready(conv)
    start_response(conv, ms=1000)
    play(conv, 2)  # 40 ms emitted, still in the browser's buffer
    conv.receive_client('{"type": "response.cancel", "event_id": "evt_c"}', now=0.0)
    upstream = conv.data_to_upstream()
    assert types(upstream) == ["response.cancel", "conversation.item.delete"]
    assert upstream[0]["event_id"] == "evt_c"  # the client's own cancel, not a second one


def test_speech_without_interrupt_response_does_not_flush() -> None:
    conv = make()
    ready(conv)
    conv.receive_upstream({"type": "session.updated", "event_id": "e", "session": {
        "audio": {"input": {"turn_detection": {"type": "server_vad", "interrupt_response": False}}}}}, 0.0)
    start_response(conv, ms=1000)
    play(conv, 5)
    conv.receive_upstream({"type": "input_audio_buffer.speech_started", "event_id": "e",
                           "audio_start_ms": 0, "item_id": "i"}, 0.0)
    assert conv.data_to_upstream() == []
    assert np.any(conv.next_frame(0.0))


def test_fatal_upstream_error_is_flagged() -> None:
    conv = make()
    ready(conv)
    conv.receive_upstream({"type": "error", "event_id": "e", "error": {
        "type": "insufficient_quota", "code": "insufficient_quota", "message": "quota"}}, 0.0)
    assert conv.fatal_error is not None and conv.fatal_error["code"] == "insufficient_quota"
    assert types(conv.data_to_client()) == ["error"]


def test_turn_latency_is_measured_from_end_of_speech() -> None:
    conv = make()
    ready(conv)
    for i in range(100):  # two seconds of mic audio sent at t = 0.00, 0.02, ...
        conv.input_audio_sent(480, i * 0.02)
    conv.receive_upstream({"type": "input_audio_buffer.speech_stopped", "event_id": "e",
                           "audio_end_ms": 1500, "item_id": "i"}, 2.0)
    start_response(conv, ms=100)
    conv.next_frame(2.3)
    assert conv.stats.turns == 1
    assert conv.stats.latencies_s[0] == pytest.approx(2.3 - 1.48, abs=0.021)
