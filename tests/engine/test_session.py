"""The engine's sans-I/O session: client events and VAD scores in, GA server events and work out.

No models here: the VAD scores are scripted and the runner's part (transcripts, synthesized
pieces) is played by the test, so every protocol rule is checked in milliseconds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from gateway.engine.commands import Cancel, Respond, Transcribe
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
                                  "conversation.item.done", "response.created", "response.output_item.added",
                                  "conversation.item.added", "response.content_part.added"]
    early, committed, respond = driver.commands
    assert isinstance(early, Transcribe) and early.item_id is None
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
    assert driver.kinds(mark)[:2] == ["conversation.item.input_audio_transcription.delta",
                                      "conversation.item.input_audio_transcription.completed"]
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
