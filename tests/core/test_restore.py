"""A new upstream session picks up the conversation: driven event by event, no sockets."""

from __future__ import annotations

from typing import Any

from gateway.core.conversation import State
from gateway.core.history import History
from gateway.core.reconnect import BACKOFF_S, ReconnectPolicy
from tests.core.test_conversation import delta, make, ready, start_response, types


def transcript_done(item_id: str, text: str) -> dict[str, Any]:
    return {"type": "conversation.item.input_audio_transcription.completed", "event_id": "e",
            "item_id": item_id, "content_index": 0, "transcript": text}


def assistant_done(item_id: str, text: str) -> dict[str, Any]:
    return {"type": "response.output_audio_transcript.done", "event_id": "e", "response_id": "resp_1",
            "item_id": item_id, "output_index": 0, "content_index": 0, "transcript": text}


def test_a_lost_session_is_restored_with_config_and_turns_then_ready() -> None:
    conv = make()
    ready(conv)
    conv.receive_upstream({"type": "conversation.item.added", "event_id": "e", "item": {
        "id": "item_u", "type": "message", "role": "user", "content": []}}, 0.0)
    conv.receive_upstream(transcript_done("item_u", "Qual é a capital do Brasil?"), 0.0)
    start_response(conv, item_id="item_a")
    conv.receive_upstream(assistant_done("item_a", "A capital do Brasil é Brasília."), 0.0)
    conv.receive_upstream({"type": "response.done", "event_id": "e", "response": {"id": "resp_1"}}, 0.0)
    conv.data_to_client()

    conv.upstream_lost("connection closed")
    told = conv.data_to_client()
    assert types(told) == ["error"] and told[0]["error"]["code"] == "upstream_reconnecting"
    assert conv.state is State.RECONNECTING
    conv.receive_client('{"type": "response.create", "event_id": "evt_wait"}', now=1.0)
    assert conv.data_to_upstream() == []  # held until the new session is ready

    conv.upstream_opened()
    replay = conv.data_to_upstream()
    assert types(replay) == ["session.update", "conversation.item.create", "conversation.item.create"]
    assert [e["item"]["role"] for e in replay[1:]] == ["user", "assistant"]
    assert [e["item"]["content"][0]["text"] for e in replay[1:]] == [
        "Qual é a capital do Brasil?", "A capital do Brasil é Brasília."]
    assert conv.state is State.RESTORING
    conv.receive_upstream({"type": "session.updated", "event_id": "e", "session": conv.session}, 2.0)
    for event in replay[1:]:
        assert conv.state is State.RESTORING
        conv.receive_upstream({"type": "conversation.item.added", "event_id": "e", "item": event["item"]}, 2.0)
    assert conv.state is State.READY
    assert types(conv.data_to_client()) == ["session.updated"]
    assert [e.get("event_id") for e in conv.data_to_upstream()] == ["evt_wait"]


def test_a_planned_rollover_is_not_announced() -> None:
    conv = make()
    ready(conv)
    conv.upstream_lost("rollover", quietly=True)
    conv.upstream_opened()
    conv.receive_upstream({"type": "session.updated", "event_id": "e", "session": conv.session}, 0.0)
    assert conv.state is State.READY
    assert conv.data_to_client() == []


def test_a_reply_in_flight_when_the_session_drops_is_settled_for_the_client() -> None:
    conv = make()
    ready(conv)
    start_response(conv)
    conv.upstream_lost("connection closed")
    done = [e for e in conv.data_to_client() if e["type"] == "response.done"]
    assert done and done[0]["response"]["status"] == "failed"


def test_history_keeps_only_what_was_heard_of_a_cut_reply() -> None:
    history = History()
    history.observe(assistant_done("item_a", "um dois três quatro cinco seis sete oito"))
    history.audio("item_a", 4000)
    history.heard("item_a", 1000)
    (event,) = history.replay()
    assert event["item"]["content"][0]["text"] == "um dois…"


def test_a_cut_heard_during_a_reconnect_shapes_the_restored_turn() -> None:
    conv = make(playout_delay_ms=0)
    ready(conv)
    conv.receive_upstream({"type": "response.created", "event_id": "e", "response": {"id": "resp_1"}}, 0.0)
    conv.receive_upstream(delta("resp_1", "item_a", 2000), 0.0)
    conv.receive_upstream(assistant_done("item_a", "um dois três quatro"), 0.0)
    for tick in range(50):  # 1 s of the 2 s reply is heard
        conv.next_frame(tick * 0.02)
    conv.upstream_lost("connection closed")
    conv.peer_lost(1.0)  # the cut lands while no session exists: it shapes the history instead
    conv.upstream_opened()
    texts = [e["item"]["content"][0]["text"] for e in conv.data_to_upstream()[1:]]
    assert texts == ["um dois…"]


def test_reconnect_backs_off_then_gives_up_after_its_budget() -> None:
    policy = ReconnectPolicy(give_up_after_s=10.0)
    assert policy.failed(0.0, fatal=False) is None  # a first connect that fails ends the call
    policy.connected()
    policy.lost(100.0)
    delays = [policy.failed(100.0 + i, fatal=False) for i in range(len(BACKOFF_S) + 2)]
    assert delays == [*BACKOFF_S, BACKOFF_S[-1], BACKOFF_S[-1]]
    assert policy.failed(110.5, fatal=False) is None
    policy.connected()
    policy.lost(200.0)
    assert policy.failed(200.1, fatal=True) is None  # a bad key is not retried
    policy.connected()
    policy.lost(300.0)
    assert policy.failed(300.1, fatal=False) == BACKOFF_S[0]  # a new loss starts the backoff again
