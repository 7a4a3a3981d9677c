"""The engine's sans-I/O session: client events and VAD scores in, GA server events and work out.

No models here: the VAD scores are scripted and the runner's part (transcripts, synthesized
pieces) is played by the test, so every protocol rule is checked in milliseconds.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from gateway.engine.commands import Cancel, DropEarly, Respond, Transcribe
from gateway.engine.session import EngineSession
from gateway.engine.vad import TAIL_MS, WINDOW_MS
from tests.schema import server_event_problem

RATE = 24000


class Driver:
    """Feeds a session audio with scripted speech probabilities and collects what comes out."""

    def __init__(self, session: EngineSession | None = None) -> None:
        self.session = session or EngineSession()
        self.events: list[dict[str, Any]] = []
        self.commands: list[Any] = []
        self._ms = 0.0
        self._scored_ms = 0.0
        self._drain()

    def _drain(self) -> None:
        for event in self.session.outbox:
            assert server_event_problem(event) is None, server_event_problem(event)
        self.events += self.session.outbox
        self.commands += self.session.commands
        self.session.outbox, self.session.commands = [], []

    def audio(self, ms: float, probability: float) -> None:
        """``ms`` of audio (a ramp, so cuts can be located) that the VAD scores ``probability``."""
        samples = int(ms * RATE / 1000)
        start = int(self._ms * RATE / 1000)
        pcm = (np.arange(start, start + samples) % 30000).astype(np.int16)
        self._ms += ms
        scores = []
        while self._scored_ms + WINDOW_MS <= self._ms:
            self._scored_ms += WINDOW_MS
            scores.append((probability, self._scored_ms))
        self.session.append_audio(pcm, scores)
        self._drain()

    def send(self, event: dict[str, Any]) -> None:
        self.session.handle(event)
        self._drain()

    def kinds(self, after: int = 0) -> list[str]:
        return [e["type"] for e in self.events[after:]]

    def one(self, kind: str) -> dict[str, Any]:
        (event,) = [e for e in self.events if e["type"] == kind]
        return event

    def respond(self, command: Respond, pieces: list[tuple[str, float]]) -> None:
        """Play the runner: each piece's text with ``seconds`` of audio, then the end."""
        for text, seconds in pieces:
            self.session.response_piece(command.response_id, text, np.ones(int(seconds * RATE), np.int16))
        self.session.response_finished(command.response_id)
        self._drain()


def fast_vad(**overrides: Any) -> dict[str, Any]:
    td = {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 100, "silence_duration_ms": 300,
          "create_response": True, "interrupt_response": True, **overrides}
    return {"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"turn_detection": td}}}}


def spoken_turn(driver: Driver) -> None:
    driver.audio(1000, 0.05)
    driver.audio(1500, 0.9)
    driver.audio(600, 0.05)


def test_a_spoken_turn_gets_the_full_ga_event_sequence() -> None:
    driver = Driver()
    assert driver.kinds() == []
    driver.send(fast_vad())
    spoken_turn(driver)
    started = driver.one("input_audio_buffer.speech_started")
    stopped = driver.one("input_audio_buffer.speech_stopped")
    # Speech began at 1000 ms: reported with the 100 ms prefix padding, within one VAD window.
    assert 900 - WINDOW_MS <= started["audio_start_ms"] <= 900
    assert 2500 - WINDOW_MS <= stopped["audio_end_ms"] <= 2500 + WINDOW_MS  # within one VAD window
    assert started["item_id"] == stopped["item_id"] == driver.one("input_audio_buffer.committed")["item_id"]
    assert driver.kinds()[1:] == ["input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
                                  "input_audio_buffer.committed", "conversation.item.added",
                                  "conversation.item.done", "response.created"]
    early, committed, respond = driver.commands
    assert isinstance(early, Transcribe) and early.item_id is None
    # The early transcription carries the reply the turn will get if it ends there: the same work.
    assert early.draft is not None and isinstance(respond, Respond)
    assert dataclasses.replace(early.draft, response_id=respond.response_id) == respond
    assert isinstance(committed, Transcribe) and committed.item_id == stopped["item_id"]
    assert committed.audio_key == early.audio_key and np.array_equal(committed.pcm, early.pcm)
    # The turn keeps its prefix padding and a short tail after the last voiced window.
    assert len(committed.pcm) == pytest.approx((stopped["audio_end_ms"] + TAIL_MS - started["audio_start_ms"])
                                               * RATE / 1000, abs=2)
    assert committed.pcm[0] == int(started["audio_start_ms"] * RATE / 1000) % 30000
    assert isinstance(respond, Respond) and respond.audio and respond.response_id

    mark = len(driver.events)
    driver.session.transcribed(committed.item_id, "Qual é a capital do Brasil?", 1.6)
    driver.respond(respond, [("A capital do Brasil", 1.2), ("é Brasília.", 0.8)])
    assert driver.kinds(mark)[:6] == ["conversation.item.input_audio_transcription.delta",
                                      "conversation.item.input_audio_transcription.completed",
                                      # the reply's item appears with its first piece
                                      "response.output_item.added", "conversation.item.added",
                                      "response.content_part.added", "response.output_audio_transcript.delta"]
    assert driver.kinds(mark).count("response.output_audio.delta") == 10  # 2 s in 200 ms deltas
    assert driver.kinds(mark)[-6:] == ["response.output_audio.done", "response.output_audio_transcript.done",
                                       "response.content_part.done", "response.output_item.done",
                                       "conversation.item.done", "response.done"]
    done = driver.one("response.done")["response"]
    assert done["status"] == "completed"
    assert done["output"][0]["content"][0]["transcript"] == "A capital do Brasil é Brasília."
    deltas = [e["delta"] for e in driver.events if e["type"] == "response.output_audio_transcript.delta"]
    assert "".join(deltas) == "A capital do Brasil é Brasília."


def test_the_llm_sees_the_conversation_in_order() -> None:
    driver = Driver()
    driver.send(fast_vad())
    spoken_turn(driver)
    _, committed, respond = driver.commands
    driver.session.transcribed(committed.item_id, "Meu nome é Carlos.", 1.0)
    driver.respond(respond, [("Prazer, Carlos!", 1.0)])
    messages = driver.session.dialogue.messages(respond.instructions)
    assert [m["role"] for m in messages] == ["system", "user", "assistant"]
    assert messages[1]["content"] == "Meu nome é Carlos." and messages[2]["content"] == "Prazer, Carlos!"
    assert "português do Brasil" in messages[0]["content"]


def test_a_pause_shorter_than_the_silence_keeps_one_turn() -> None:
    driver = Driver()
    driver.send(fast_vad(silence_duration_ms=500))
    driver.audio(500, 0.05)
    driver.audio(800, 0.9)
    driver.audio(250, 0.05)  # long enough for an early transcription, too short to end the turn
    driver.audio(800, 0.9)
    driver.audio(700, 0.05)
    assert driver.kinds().count("input_audio_buffer.speech_stopped") == 1
    early = [c for c in driver.commands if isinstance(c, Transcribe) and c.item_id is None]
    (committed,) = [c for c in driver.commands if isinstance(c, Transcribe) and c.item_id]
    assert len(early) == 2 and early[0].audio_key != committed.audio_key == early[1].audio_key
    assert len(committed.pcm) / RATE > 1.8  # both halves of the sentence


def test_speech_during_a_reply_cancels_it_when_interrupt_response() -> None:
    driver = Driver()
    driver.send(fast_vad())
    spoken_turn(driver)
    respond = driver.commands[-1]
    driver.session.response_piece(respond.response_id, "Uma resposta longa", np.ones(RATE, np.int16))
    driver.audio(400, 0.9)  # the user talks over it
    cancel = [c for c in driver.commands if isinstance(c, Cancel)]
    assert cancel == [Cancel(respond.response_id)]
    assert driver.one("response.done")["response"]["status"] == "cancelled"
    # Late pieces of the cancelled response never reach the client.
    mark = len(driver.events)
    driver.session.response_piece(respond.response_id, "resto", np.ones(RATE, np.int16))
    driver.session.response_finished(respond.response_id)
    driver._drain()
    assert driver.kinds(mark) == []


def test_no_cancel_without_interrupt_response_and_no_reply_without_create_response() -> None:
    driver = Driver()
    driver.send(fast_vad(create_response=False, interrupt_response=False))
    spoken_turn(driver)
    assert not [c for c in driver.commands if isinstance(c, Respond)]
    driver.send({"type": "response.create"})
    respond = driver.commands[-1]
    assert isinstance(respond, Respond)
    driver.audio(1000, 0.9)
    assert not [c for c in driver.commands if isinstance(c, Cancel)]


def test_truncate_cuts_the_assistant_text_to_what_was_heard() -> None:
    driver = Driver()
    driver.send({"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": [
        {"type": "input_text", "text": "Conte uma história."}]}})
    driver.send({"type": "response.create"})
    respond = driver.commands[-1]
    driver.respond(respond, [("Era uma vez um menino.", 2.0), ("Ele morava numa casa azul perto do mar.", 3.0)])
    item_id = driver.one("response.done")["response"]["output"][0]["id"]
    driver.send({"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0, "audio_end_ms": 3500})
    assert driver.one("conversation.item.truncated")["audio_end_ms"] == 3500
    driver.send({"type": "conversation.item.retrieve", "item_id": item_id})
    kept = driver.one("conversation.item.retrieved")["item"]["content"][0]["transcript"]
    assert kept.startswith("Era uma vez um menino. Ele morava") and "mar" not in kept
    assert driver.session.dialogue.messages("")[-1]["content"] == kept
    driver.send({"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0,
                 "audio_end_ms": 9000, "event_id": "evt_far"})
    error = [e for e in driver.events if e["type"] == "error"][-1]["error"]
    assert error["event_id"] == "evt_far" and "shorter" in error["message"]


def test_items_are_created_retrieved_and_deleted() -> None:
    driver = Driver()
    driver.send({"type": "conversation.item.create", "item": {"id": "item_a", "type": "message", "role": "user",
                 "content": [{"type": "input_text", "text": "primeiro"}]}})
    driver.send({"type": "conversation.item.create", "item": {"id": "item_b", "type": "message", "role": "system",
                 "content": [{"type": "input_text", "text": "segundo"}]}})
    driver.send({"type": "conversation.item.create", "previous_item_id": "item_a", "item": {
        "id": "item_c", "type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "meio"}]}})
    added = [e for e in driver.events if e["type"] == "conversation.item.added"]
    assert [(e["item"]["id"], e["previous_item_id"]) for e in added] == [
        ("item_a", None), ("item_b", "item_a"), ("item_c", "item_a")]
    assert [m["content"] for m in driver.session.dialogue.messages("sys")[1:]] == ["primeiro", "meio", "segundo"]
    driver.send({"type": "conversation.item.delete", "item_id": "item_c"})
    assert driver.one("conversation.item.deleted")["item_id"] == "item_c"
    driver.send({"type": "conversation.item.retrieve", "item_id": "item_c", "event_id": "evt_gone"})
    error = driver.events[-1]["error"]
    assert driver.events[-1]["type"] == "error" and error["code"] == "item_not_found"
    assert error["event_id"] == "evt_gone"


@pytest.mark.parametrize("event", [
    {"type": "no.such.event"},
    {"type": "conversation.item.delete"},
    {"type": "conversation.item.truncate", "item_id": "item_x", "audio_end_ms": 10},
    {"type": "session.update", "session": "nope"},
    {"type": "session.update", "session": {"audio": {"input": {"turn_detection": {"type": "server_vad",
                                                                                   "threshold": "high"}}}}},
    {"type": "session.update", "session": {"audio": {"input": {"format": {"type": "audio/pcmu"}}}}},
    {"type": "response.cancel"},
    {"type": "input_audio_buffer.commit"},
    {"type": "response.create", "response": 5},
])
def test_invalid_events_get_an_error_and_change_nothing(event: dict[str, Any]) -> None:
    driver = Driver()
    before = driver.session.session
    driver.send({**event, "event_id": "evt_bad"})
    (error,) = driver.events
    assert error["type"] == "error" and error["error"]["event_id"] == "evt_bad" and error["error"]["message"]
    assert driver.session.session == before
    driver.send(fast_vad())  # the session goes on
    spoken_turn(driver)
    assert "response.created" in driver.kinds()


def test_session_update_accepts_openai_names_and_turns_vad_off() -> None:
    driver = Driver()
    driver.send({"type": "session.update", "session": {
        "type": "realtime", "model": "gpt-realtime", "instructions": "Seja breve.",
        "audio": {"input": {"transcription": {"model": "whisper-1", "language": "pt"}, "turn_detection": None},
                  "output": {"voice": "alloy", "speed": 1.2}}}})
    session = driver.one("session.updated")["session"]
    assert session["audio"]["output"]["voice"] == "alloy" and session["audio"]["input"]["turn_detection"] is None
    driver.audio(500, 0.05)
    driver.audio(1000, 0.9)
    driver.audio(500, 0.05)
    assert "input_audio_buffer.speech_started" not in driver.kinds()
    driver.send({"type": "input_audio_buffer.commit"})
    (transcribe,) = driver.commands
    assert transcribe.item_id == driver.one("input_audio_buffer.committed")["item_id"]
    assert len(transcribe.pcm) == 2 * RATE and transcribe.language == "pt"
    driver.send({"type": "response.create", "response": {"instructions": "Responda em uma palavra."}})
    respond = driver.commands[-1]
    assert respond.voice == "alloy" and respond.speed == 1.2
    assert respond.instructions.startswith("Responda em uma palavra.")
    driver.send({"type": "response.create", "event_id": "evt_busy"})
    assert driver.events[-1]["error"]["code"] == "conversation_already_has_active_response"


def test_clear_drops_the_buffered_audio() -> None:
    driver = Driver()
    driver.send({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {
        "turn_detection": None}}}})
    driver.audio(1000, 0.9)
    driver.send({"type": "input_audio_buffer.clear"})
    assert driver.events[-1]["type"] == "input_audio_buffer.cleared"
    driver.send({"type": "input_audio_buffer.commit", "event_id": "evt_empty"})
    assert driver.events[-1]["error"]["code"] == "input_audio_buffer_commit_empty"


def test_uncommitted_audio_is_capped_with_one_error() -> None:
    """``turn_detection: null`` and no commit: the buffer keeps the newest audio, never all of it."""
    driver = Driver(EngineSession(max_input_ms=2000))
    driver.send({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {
        "turn_detection": None}}}})
    for _ in range(50):  # 5 s in 100 ms appends
        driver.audio(100, 0.9)
        assert driver.session.buffered_ms <= 2000
    errors = [e["error"] for e in driver.events if e["type"] == "error"]
    assert len(errors) == 1 and errors[0]["code"] == "input_audio_buffer_overflow"
    driver.send({"type": "input_audio_buffer.commit"})
    (transcribe,) = [c for c in driver.commands if isinstance(c, Transcribe)]
    assert len(transcribe.pcm) == 2 * RATE
    assert transcribe.pcm[-1] == (5 * RATE - 1) % 30000  # the newest audio is what was kept
    driver.audio(3000, 0.9)  # a new buffer may overflow again, and is told again
    assert len([e for e in driver.events if e["type"] == "error"]) == 2


def test_silence_between_turns_is_not_kept() -> None:
    driver = Driver()
    driver.send(fast_vad())
    for _ in range(600):  # a minute of silence, as the gateway streams it
        driver.audio(100, 0.05)
    assert driver.session.buffered_ms <= 1000
    driver.audio(1500, 0.9)
    driver.audio(600, 0.05)
    started = driver.one("input_audio_buffer.speech_started")
    assert 60_000 - 100 - WINDOW_MS <= started["audio_start_ms"] <= 60_000 - 100
    committed = [c for c in driver.commands if isinstance(c, Transcribe) and c.item_id][0]
    assert committed.pcm[0] == int(started["audio_start_ms"] * RATE / 1000) % 30000  # prefix padding kept


def test_speech_after_a_pause_drops_the_early_work() -> None:
    driver = Driver()
    driver.send(fast_vad(silence_duration_ms=500))
    driver.audio(300, 0.05)
    driver.audio(800, 0.9)
    driver.audio(250, 0.05)  # paused: early transcription (with its draft reply)
    assert [type(c) for c in driver.commands] == [Transcribe]
    driver.audio(500, 0.9)  # the user goes on
    assert [type(c) for c in driver.commands] == [Transcribe, DropEarly]
    driver.audio(700, 0.05)
    assert [type(c) for c in driver.commands] == [Transcribe, DropEarly, Transcribe, Transcribe, Respond]


def test_a_reply_cancelled_before_it_said_anything_has_no_output() -> None:
    driver = Driver()
    driver.send(fast_vad())
    spoken_turn(driver)
    respond = driver.commands[-1]
    driver.audio(400, 0.9)  # barge-in before the first piece
    done = driver.one("response.done")["response"]
    assert done["status"] == "cancelled" and done["output"] == []
    assert "response.output_item.added" not in driver.kinds()
    assert driver.commands[-1] == Cancel(respond.response_id)


WEATHER = {"type": "function", "name": "get_weather", "description": "Tempo agora numa cidade.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def test_a_function_call_and_its_output_in_ga_shapes() -> None:
    driver = Driver()
    driver.send({"type": "session.update", "session": {"type": "realtime", "tools": [WEATHER], "tool_choice": "auto"}})
    driver.send({"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": [
        {"type": "input_text", "text": "Como está o tempo em Recife?"}]}})
    driver.send({"type": "response.create"})
    respond = driver.commands[-1]
    assert isinstance(respond, Respond) and respond.tools == (WEATHER,) and respond.tool_choice == "auto"
    mark = len(driver.events)
    driver.session.response_function_call(respond.response_id, "get_weather", '{"city": "Recife"}')
    driver.session.response_finished(respond.response_id, '<tool_call>\n{"name": "get_weather"}\n</tool_call>')
    driver._drain()
    assert driver.kinds(mark) == ["response.output_item.added", "conversation.item.added",
                                  "response.function_call_arguments.delta", "response.function_call_arguments.done",
                                  "response.output_item.done", "conversation.item.done", "response.done"]
    added = driver.events[mark]["item"]
    arguments = driver.one("response.function_call_arguments.done")
    assert added["type"] == "function_call" and added["status"] == "in_progress" and added["name"] == "get_weather"
    assert arguments["call_id"] == added["call_id"] and arguments["item_id"] == added["id"]
    assert arguments["arguments"] == '{"city": "Recife"}' and arguments["name"] == "get_weather"
    done = driver.one("response.done")["response"]
    assert done["status"] == "completed"
    assert [(i["type"], i["status"], i["call_id"]) for i in done["output"]] == [
        ("function_call", "completed", added["call_id"])]
    # The client runs the function and asks for the spoken answer.
    driver.send({"type": "conversation.item.create", "item": {
        "type": "function_call_output", "call_id": added["call_id"], "output": '{"temp_c": 31, "sky": "sol"}'}})
    assert driver.events[-1]["item"]["type"] == "function_call_output"
    driver.send({"type": "response.create"})
    answer = driver.commands[-1]
    messages = driver.session.dialogue.messages(answer.instructions)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool"]
    assert messages[2]["tool_calls"] == [{"name": "get_weather", "arguments": {"city": "Recife"}}]
    assert messages[3]["content"] == '{"temp_c": 31, "sky": "sol"}'
    driver.respond(answer, [("Em Recife faz 31 graus e sol.", 2.0)])
    assert [e["response"]["status"] for e in driver.events if e["type"] == "response.done"] == ["completed"] * 2


def test_function_call_output_needs_its_call_id() -> None:
    driver = Driver()
    driver.send({"type": "conversation.item.create", "event_id": "evt_out", "item": {
        "type": "function_call_output", "output": "42"}})
    error = driver.events[-1]["error"]
    assert error["event_id"] == "evt_out" and error["param"] == "item.call_id"


def test_tool_choice_reaches_the_runner() -> None:
    driver = Driver()
    driver.send({"type": "session.update", "session": {"type": "realtime", "tools": [WEATHER, {"type": "mcp", "server_label": "docs"}],
                                                       "tool_choice": {"type": "function", "name": "get_weather"}}})
    driver.send({"type": "response.create"})
    respond = driver.commands[-1]
    assert respond.tools == (WEATHER,) and respond.tool_choice == "get_weather"
    driver.send({"type": "response.cancel"})
    driver.send({"type": "response.create", "response": {"tool_choice": "none"}})
    assert driver.commands[-1].tool_choice == "none"


def test_a_long_turn_is_read_ahead_while_the_user_talks() -> None:
    driver = Driver()
    driver.send(fast_vad())
    driver.audio(500, 0.05)
    for _ in range(40):  # 4 s of speech as 100 ms appends
        driver.audio(100, 0.9)
    partial = [c for c in driver.commands if isinstance(c, Transcribe) and c.partial]
    assert len(partial) == 3 and all(c.item_id is None and c.draft is None for c in partial)
    assert [len(c.pcm) for c in partial] == sorted(len(c.pcm) for c in partial)  # the words so far, growing
    assert driver.kinds()[1:] == ["input_audio_buffer.speech_started"]  # nothing the client sees
    driver.audio(600, 0.05)
    committed = [c for c in driver.commands if isinstance(c, Transcribe) and c.item_id][0]
    assert all(c.audio_key != committed.audio_key for c in partial)  # never taken for the turn's text


def test_the_sessions_transcription_prompt_reaches_every_transcription() -> None:
    """``audio.input.transcription.prompt`` replaces the engine's generic context for Whisper;
    without one, the runner is told to use its own (None)."""
    driver = Driver()
    driver.send(fast_vad())
    spoken_turn(driver)
    assert {c.prompt for c in driver.commands if isinstance(c, Transcribe)} == {None}
    driver.commands.clear()
    driver.send({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {
        "transcription": {"model": "whisper-1", "language": "pt", "prompt": "Receitas de bolo e de pão."}}}}})
    spoken_turn(driver)
    transcriptions = [c for c in driver.commands if isinstance(c, Transcribe)]
    assert len(transcriptions) >= 2  # the early one at the pause and the committed turn
    assert {c.prompt for c in transcriptions} == {"Receitas de bolo e de pão."}
