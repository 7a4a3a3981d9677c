"""The offline engine with its real packaged models, driven over the Realtime WebSocket protocol."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import numpy as np
import pytest

from gateway.engine.models import WHISPER_BASE, default_cache_dir, materialize
from gateway.engine.stt import Transcriber
from tests.audio_tools import DATA, read_wav
from tests.conftest import ENGINE_TEST_KEY

from .client import EngineClient, silence

pytestmark = pytest.mark.engine
FAST_VAD = {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 100, "silence_duration_ms": 300,
            "create_response": True, "interrupt_response": True}


@pytest.fixture(scope="module")
def whisper() -> Transcriber:
    return Transcriber(materialize(WHISPER_BASE, default_cache_dir()), 1)


@pytest.fixture
async def client(engine_url: str) -> AsyncIterator[EngineClient]:
    client = await EngineClient.open(engine_url, ENGINE_TEST_KEY)
    await client.wait_for("session.created")
    await client.send({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {
        "turn_detection": FAST_VAD, "transcription": {"model": "whisper-1", "language": "pt"}}}}})
    await client.wait_for("session.updated")
    yield client
    await client.close()


def wav(name: str) -> np.ndarray:
    pcm, rate = read_wav(DATA / f"{name}.wav")
    assert rate == 24000
    return pcm


async def ask(client: EngineClient, name: str, lead_in: float = 0.5) -> tuple[int, asyncio.Task[float]]:
    """Say a test utterance after ``lead_in`` s of silence, then keep the line open with silence."""
    mark = len(client.events)
    await client.append(silence(lead_in), realtime=4)
    await client.append(wav(name), realtime=4)
    return mark, asyncio.create_task(client.append(silence(6), realtime=2))


async def test_a_spoken_question_gets_a_spoken_portuguese_answer(client: EngineClient, whisper: Transcriber) -> None:
    speech = wav("pt_br_capital_brasil")
    mark, tail = await ask(client, "pt_br_capital_brasil")
    started = await client.wait_for("input_audio_buffer.speech_started", after=mark)
    stopped = await client.wait_for("input_audio_buffer.speech_stopped", after=mark)
    assert 300 <= started["audio_start_ms"] <= 500  # speech at 500 ms, 100 ms prefix padding
    speech_end = 500 + len(speech) * 1000 // 24000
    assert speech_end - 250 <= stopped["audio_end_ms"] <= speech_end + 150
    user = await client.wait_for("conversation.item.input_audio_transcription.completed", after=mark)
    assert "capital" in user["transcript"].lower() and "brasil" in user["transcript"].lower()
    assert user["item_id"] == stopped["item_id"]
    done = await client.wait_for("response.done", after=mark, timeout=60)
    await tail
    assert done["response"]["status"] == "completed"
    reply = client.reply_audio(done["response"]["id"])
    assert len(reply) > 24000 * 0.5
    heard = whisper.transcribe(reply, "pt")
    assert len(heard.split()) >= 2, heard
    assert whisper.detect_language(reply) == "pt"
    transcript = await client.wait_for("response.output_audio_transcript.done", after=mark)
    assert transcript["transcript"].strip()
    kinds = [e["type"] for e in client.events[mark:] if e["type"] != "response.output_audio.delta"]
    assert kinds.index("response.created") < kinds.index("response.output_item.added") \
        < kinds.index("response.content_part.added") < kinds.index("response.output_audio_transcript.delta") \
        < kinds.index("response.output_audio.done") < kinds.index("response.done")


async def test_cancel_stops_the_reply_within_one_chunk(client: EngineClient) -> None:
    # A long request with a pause in the middle: a longer silence keeps it one turn.
    await client.send({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {
        "turn_detection": {**FAST_VAD, "silence_duration_ms": 700}}}}})
    mark, tail = await ask(client, "pt_br_historia")
    first = await client.wait_for("response.output_audio.delta", after=mark, timeout=60)
    await client.send({"type": "response.cancel", "event_id": "evt_cancel"})
    cancelled_at = len(client.events)
    done = await client.wait_for("response.done", after=mark, timeout=10)
    tail.cancel()
    assert done["response"]["status"] == "cancelled"
    # Each piece is announced by a transcript delta, then its audio: after the cancel no new piece
    # starts, so at most the rest of the piece already on the wire arrives.
    after_cancel = client.events[cancelled_at:]
    assert not [e for e in after_cancel if e["type"] == "response.output_audio_transcript.delta"]
    pieces = [i for i, e in enumerate(client.events[:cancelled_at])
              if e["type"] == "response.output_audio_transcript.delta" and e["response_id"] == first["response_id"]]
    in_flight = [e for e in client.events[pieces[-1]:cancelled_at] if e["type"] == "response.output_audio.delta"]
    late = [e for e in after_cancel if e["type"] == "response.output_audio.delta"]
    assert len(late) + len(in_flight) <= 15  # one piece: at most 3 s of 200 ms deltas
    await asyncio.sleep(1.0)
    assert not [e for e in client.events[client.events.index(done):] if e["type"] == "response.output_audio.delta"]
    assert len(client.of_type("input_audio_buffer.speech_stopped")) == 1


async def test_truncate_shortens_the_stored_item(client: EngineClient) -> None:
    mark, tail = await ask(client, "pt_br_dom_casmurro")
    done = await client.wait_for("response.done", after=mark, timeout=60)
    await tail
    item = done["response"]["output"][0]
    full = item["content"][0]["transcript"]
    reply_ms = len(client.reply_audio(done["response"]["id"])) * 1000 // 24000
    await client.send({"type": "conversation.item.truncate", "item_id": item["id"], "content_index": 0,
                       "audio_end_ms": reply_ms // 3})
    truncated = await client.wait_for("conversation.item.truncated", after=mark)
    assert truncated["audio_end_ms"] == reply_ms // 3
    await client.send({"type": "conversation.item.retrieve", "item_id": item["id"]})
    retrieved = await client.wait_for("conversation.item.retrieved", after=mark)
    kept = retrieved["item"]["content"][0]["transcript"]
    assert len(kept) < len(full), (kept, full)
    # Truncating beyond the audio is refused, and the session goes on.
    await client.send({"type": "conversation.item.truncate", "item_id": item["id"], "content_index": 0,
                       "audio_end_ms": reply_ms * 10, "event_id": "evt_too_far"})
    error = await client.wait_for("error", where=lambda e: e["error"]["event_id"] == "evt_too_far")
    assert "shorter" in error["error"]["message"]


async def test_two_sessions_do_not_mix(engine_url: str) -> None:
    first, second = await EngineClient.open(engine_url, ENGINE_TEST_KEY), await EngineClient.open(engine_url, ENGINE_TEST_KEY)
    try:
        for client in (first, second):
            await client.wait_for("session.created")
            await client.send({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {
                "turn_detection": FAST_VAD}}}})
        (_, tail1), (_, tail2) = await asyncio.gather(ask(first, "pt_br_capital_brasil"),
                                                      ask(second, "pt_br_dom_casmurro"))
        user1 = await first.wait_for("conversation.item.input_audio_transcription.completed", timeout=60)
        user2 = await second.wait_for("conversation.item.input_audio_transcription.completed", timeout=60)
        assert "capital" in user1["transcript"].lower() and "escreveu" not in user1["transcript"].lower()
        assert "escreveu" in user2["transcript"].lower() and "capital" not in user2["transcript"].lower()
        await first.wait_for("response.done", timeout=90)
        await second.wait_for("response.done", timeout=90)
        await asyncio.gather(tail1, tail2)
        await first.send({"type": "conversation.item.retrieve", "item_id": user2["item_id"], "event_id": "evt_other"})
        error = await first.wait_for("error", where=lambda e: e["error"]["event_id"] == "evt_other")
        assert error["error"]["code"] == "item_not_found"
    finally:
        await first.close()
        await second.close()


async def test_malformed_events_get_errors_and_the_session_continues(client: EngineClient) -> None:
    await client.ws.send("{not json")
    await client.wait_for("error", where=lambda e: e["error"]["code"] == "invalid_json")
    await client.send({"type": "no.such.event", "event_id": "evt_unknown"})
    await client.wait_for("error", where=lambda e: e["error"]["event_id"] == "evt_unknown")
    await client.send({"type": "conversation.item.delete", "event_id": "evt_missing"})
    await client.wait_for("error", where=lambda e: e["error"]["event_id"] == "evt_missing")
    await client.send({"type": "input_audio_buffer.append", "audio": "!!", "event_id": "evt_audio"})
    await client.wait_for("error", where=lambda e: e["error"]["event_id"] == "evt_audio")
    await client.send({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                       "content": [{"type": "input_text", "text": "Diga apenas: olá."}]}})
    await client.send({"type": "response.create"})
    done = await client.wait_for("response.done", timeout=60)
    assert done["response"]["status"] == "completed"


async def test_manual_commit_without_turn_detection(client: EngineClient) -> None:
    await client.send({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {
        "turn_detection": None}}}})
    await client.wait_for("session.updated")
    mark = len(client.events)
    await client.append(np.concatenate((silence(0.3), wav("pt_br_capital_brasil"), silence(0.3))), realtime=4)
    await asyncio.sleep(0.5)
    assert not client.of_type("input_audio_buffer.speech_started")[mark:]
    await client.send({"type": "input_audio_buffer.commit"})
    await client.wait_for("input_audio_buffer.committed", after=mark)
    user = await client.wait_for("conversation.item.input_audio_transcription.completed", after=mark)
    assert "brasil" in user["transcript"].lower()
    assert not [e for e in client.events[mark:] if e["type"] == "response.created"]
    await client.send({"type": "response.create"})
    await client.wait_for("response.done", after=mark, timeout=60)
    await client.send({"type": "input_audio_buffer.commit", "event_id": "evt_empty"})
    error = await client.wait_for("error", where=lambda e: e["error"]["event_id"] == "evt_empty")
    assert error["error"]["code"] == "input_audio_buffer_commit_empty"


WEATHER = {"type": "function", "name": "get_weather",
           "description": "Dá o tempo agora numa cidade: temperatura em graus Celsius e como está o céu.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "a cidade"}},
                          "required": ["city"]}}


async def test_a_function_call_and_a_spoken_answer_that_uses_its_result(client: EngineClient) -> None:
    """The real model calls the session's tool, the client answers it, the reply speaks the result."""
    await client.send({"type": "session.update", "session": {"type": "realtime", "tools": [WEATHER],
                                                             "tool_choice": "auto"}})
    mark = len(client.events)
    await client.wait_for("session.updated", after=mark)
    await client.send({"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": [
        {"type": "input_text", "text": "Como está o tempo agora em Recife?"}]}})
    await client.send({"type": "response.create"})
    done = await client.wait_for("response.done", after=mark, timeout=90)
    calls = [item for item in done["response"]["output"] if item["type"] == "function_call"]
    assert calls, done["response"]["output"]
    call = calls[0]
    assert call["name"] == "get_weather" and "recife" in json.loads(call["arguments"])["city"].lower()
    arguments = await client.wait_for("response.function_call_arguments.done", after=mark)
    assert (arguments["call_id"], arguments["item_id"], arguments["arguments"]) == (call["call_id"], call["id"],
                                                                                     call["arguments"])
    mark = len(client.events)
    await client.send({"type": "conversation.item.create", "item": {
        "type": "function_call_output", "call_id": call["call_id"],
        "output": json.dumps({"temperatura_celsius": 31, "ceu": "ensolarado"})}})
    await client.send({"type": "response.create"})
    done = await client.wait_for("response.done", after=mark, timeout=90)
    (message,) = [item for item in done["response"]["output"] if item["type"] == "message"]
    transcript = message["content"][0]["transcript"].lower()
    assert "31" in transcript or "trinta e um" in transcript, transcript
    assert len(client.reply_audio(done["response"]["id"])) > 24000 * 0.5
