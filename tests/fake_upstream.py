"""A Realtime GA server standing in for OpenAI's, which cannot run here.

It speaks the exact wire protocol (every event it sends validates against the ``openai``
package's types, see ``test_event_schema.py``), detects speech with a plain energy VAD, and
answers each user turn with real audio — a voiced signal at a known pitch — streamed faster than
real time, the way OpenAI does. It records everything the gateway sends so tests can check that
the caller's voice arrived intact and which truncates/cancels were issued.
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from gateway.core.events import error_event, new_id, server_event

from .audio_tools import rms, voiced
from .schema import client_event_problem, server_event_problem

RATE = 24000
FRAME = 480  # 20 ms


@dataclass
class Behaviour:
    api_key: str | None = "sk-test-upstream-key"
    reply_seconds: float = 2.0
    reply_pitch_hz: float = 220.0
    reply_text: str = "Olá! Em que posso ajudar?"
    user_transcript: str = "teste de fala"
    speed: float = 5.0  # reply audio is sent this many times faster than real time
    vad_rms: float = 600.0
    fatal_error_after_turns: int | None = None  # send a fatal error instead of the Nth reply
    session_created_delay: float = 0.0  # hold session.created back (slow upstream handshake)
    # With tools in the session, a user turn is answered with a call to the first tool; the reply
    # after its function_call_output speaks that output (as transcript) at tool_reply_pitch_hz.
    call_tools: bool = False
    tool_arguments: str = '{"city": "Recife"}'
    tool_reply_pitch_hz: float = 330.0


@dataclass
class FakeSession:
    session: dict[str, Any]
    connection: ServerConnection
    behaviour: Behaviour
    audio: list[np.ndarray] = field(default_factory=list)
    client_events: list[dict[str, Any]] = field(default_factory=list)
    items: dict[str, dict[str, Any]] = field(default_factory=dict)  # item id → {role, audio_ms, truncated}
    last_item: str | None = None
    active_response: str | None = None
    response_task: asyncio.Task[None] | None = None
    turns: int = 0
    tool_output: str | None = None  # the last function_call_output, for the next reply to speak
    _buffer_ms: float = 0.0
    _speech_start: float | None = None
    _silence_ms: float = 0.0
    _pending: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int16))

    @property
    def received(self) -> np.ndarray:
        return np.concatenate(self.audio) if self.audio else np.zeros(0, np.int16)

    def events_of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.client_events if e.get("type") == kind]

    async def send(self, kind: str, **fields: Any) -> None:
        await self._send(server_event(kind, **fields))

    async def send_error(self, message: str, code: str, event_id: str | None = None) -> None:
        await self._send(error_event(message, code=code, event_id=event_id))

    async def _send(self, event: dict[str, Any]) -> None:
        problem = server_event_problem(event)
        assert problem is None, f"the fake upstream must speak the exact GA protocol: {problem}"
        await self.connection.send(json.dumps(event))


class FakeRealtimeServer:
    def __init__(self, behaviour: Behaviour | None = None) -> None:
        self.behaviour = behaviour or Behaviour()
        self.sessions: list[FakeSession] = []
        self.schema_problems: list[str] = []  # client events from the gateway that break the GA types
        self.open_connections = 0
        self._server: Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/realtime"

    def drop_connections(self) -> None:
        """Kill every open session abruptly (a crashed upstream: no close frame)."""
        for session in self.sessions:
            session.connection.transport.abort()

    def freeze(self) -> None:
        """Stop reading from every open session: no answers, not even to pings (a hung upstream)."""
        for session in self.sessions:
            session.connection.transport.pause_reading()

    async def __aenter__(self) -> FakeRealtimeServer:
        self._server = await serve(self._handle, "127.0.0.1", 0, process_request=self._authorize,
                                   max_size=2**24)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def _authorize(self, connection: ServerConnection, request: Request) -> Response | None:
        expected = self.behaviour.api_key
        if expected and request.headers.get("Authorization") != f"Bearer {expected}":
            body = b'{"error":{"type":"invalid_request_error","code":"invalid_api_key","message":"Incorrect API key"}}'
            return Response(401, "Unauthorized", Headers({"Content-Type": "application/json"}), body)
        return None

    async def _handle(self, connection: ServerConnection) -> None:
        session = FakeSession(_default_session(), connection, self.behaviour)
        self.sessions.append(session)
        self.open_connections += 1
        try:
            await asyncio.sleep(self.behaviour.session_created_delay)
            await session.send("session.created", session=session.session)
            async for message in connection:
                event = json.loads(message)
                if event.get("type") != "input_audio_buffer.append" or not session.audio:
                    problem = client_event_problem(event)
                    if problem is not None:
                        self.schema_problems.append(problem)
                await _on_client_event(session, event)
        finally:
            self.open_connections -= 1
            if session.response_task is not None:
                session.response_task.cancel()


def _default_session() -> dict[str, Any]:
    return {
        "type": "realtime", "object": "realtime.session", "id": new_id("sess"), "model": "gpt-realtime",
        "output_modalities": ["audio"], "instructions": "",
        "audio": {
            "input": {"format": {"type": "audio/pcm", "rate": RATE}, "transcription": None,
                      "turn_detection": {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
                                         "silence_duration_ms": 500, "create_response": True,
                                         "interrupt_response": True}},
            "output": {"format": {"type": "audio/pcm", "rate": RATE}, "voice": "alloy"},
        },
    }


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


async def _on_client_event(s: FakeSession, event: dict[str, Any]) -> None:
    kind = event.get("type")
    event_id = event.get("event_id")
    if kind != "input_audio_buffer.append":
        s.client_events.append(event)
    if kind == "session.update":
        s.session = _merge(s.session, event.get("session", {}))
        await s.send("session.updated", session=s.session)
    elif kind == "input_audio_buffer.append":
        pcm = np.frombuffer(base64.b64decode(event["audio"]), np.int16)
        s.audio.append(pcm)
        await _vad(s, pcm)
    elif kind == "input_audio_buffer.commit":
        await _commit(s, s._buffer_ms)
    elif kind == "input_audio_buffer.clear":
        await s.send("input_audio_buffer.cleared")
    elif kind == "response.create":
        _start_response(s)
    elif kind == "response.cancel":
        if s.active_response is None:
            await s.send_error("Cancellation failed: no active response found", "response_cancel_not_active", event_id)
        elif s.response_task is not None:
            s.response_task.cancel()
    elif kind == "conversation.item.truncate":
        item = s.items.get(event.get("item_id", ""))
        end_ms = event.get("audio_end_ms", 0)
        if item is None:
            await s.send_error(f"Item {event.get('item_id')} not found", "item_not_found", event_id)
        elif end_ms > item["audio_ms"]:
            await s.send_error(f"Audio content of {item['audio_ms']}ms is already shorter than {end_ms}ms",
                               "invalid_value", event_id)
        else:
            item["audio_ms"] = end_ms
            item["truncated"] = True
            await s.send("conversation.item.truncated", item_id=event["item_id"],
                         content_index=event.get("content_index", 0), audio_end_ms=end_ms)
    elif kind == "conversation.item.delete":
        if s.items.pop(event.get("item_id", ""), None) is None:
            await s.send_error(f"Item {event.get('item_id')} not found", "item_not_found", event_id)
        else:
            await s.send("conversation.item.deleted", item_id=event["item_id"])
    elif kind == "conversation.item.create":
        item = dict(event.get("item", {}), id=event.get("item", {}).get("id") or new_id("item"))
        item.setdefault("object", "realtime.item")
        item.setdefault("status", "completed")
        s.items[item["id"]] = {"role": item.get("role"), "audio_ms": 0, "truncated": False}
        if item.get("type") == "function_call_output":
            s.tool_output = str(item.get("output", ""))
        await s.send("conversation.item.added", previous_item_id=s.last_item, item=item)
        await s.send("conversation.item.done", previous_item_id=s.last_item, item=item)
        s.last_item = item["id"]
    elif kind == "conversation.item.retrieve":
        item = s.items.get(event.get("item_id", ""))
        if item is None:
            await s.send_error(f"Item {event.get('item_id')} not found", "item_not_found", event_id)
        else:  # like OpenAI: a truncated item's transcript is gone
            transcript = "" if item["truncated"] else item.get("transcript")
            part = ({"type": "output_audio", "transcript": transcript} if item["role"] == "assistant"
                    else {"type": "input_audio", "transcript": transcript})
            await s.send("conversation.item.retrieved", item={
                "id": event["item_id"], "object": "realtime.item", "type": "message", "role": item["role"],
                "status": "completed", "content": [part]})
    else:
        await s.send_error(f"Invalid event type '{kind}'", "invalid_event", event_id)


async def _vad(s: FakeSession, pcm: np.ndarray) -> None:
    detection = s.session["audio"]["input"].get("turn_detection")
    s._pending = np.concatenate((s._pending, pcm))
    while len(s._pending) >= FRAME:
        frame, s._pending = s._pending[:FRAME], s._pending[FRAME:]
        s._buffer_ms += 20
        if not detection:
            continue
        loud = rms(frame) > s.behaviour.vad_rms
        if loud and s._speech_start is None:
            s._speech_start = s._buffer_ms - 20
            s._silence_ms = 0
            item_id = new_id("item")
            s.items[item_id] = {"role": "user", "audio_ms": 0, "truncated": False}
            s._speech_item = item_id  # type: ignore[attr-defined]
            start = max(0, int(s._speech_start - detection.get("prefix_padding_ms", 0)))
            await s.send("input_audio_buffer.speech_started", audio_start_ms=start, item_id=item_id)
            if s.active_response and detection.get("interrupt_response", True) and s.response_task:
                s.response_task.cancel()
        elif s._speech_start is not None:
            s._silence_ms = 0 if loud else s._silence_ms + 20
            if s._silence_ms >= detection.get("silence_duration_ms", 500):
                end = int(s._buffer_ms - s._silence_ms)
                s._speech_start = None
                item_id = s._speech_item  # type: ignore[attr-defined]
                await s.send("input_audio_buffer.speech_stopped", audio_end_ms=end, item_id=item_id)
                await _commit(s, end, item_id)
                if detection.get("create_response", True):
                    _start_response(s)


async def _commit(s: FakeSession, end_ms: float, item_id: str | None = None) -> None:
    item_id = item_id or new_id("item")
    s.items.setdefault(item_id, {"role": "user", "audio_ms": 0, "truncated": False})
    await s.send("input_audio_buffer.committed", previous_item_id=s.last_item, item_id=item_id)
    item = {"id": item_id, "object": "realtime.item", "type": "message", "role": "user", "status": "completed",
            "content": [{"type": "input_audio", "transcript": None}]}
    await s.send("conversation.item.added", previous_item_id=s.last_item, item=item)
    s.last_item = item_id
    await s.send("conversation.item.input_audio_transcription.completed", item_id=item_id, content_index=0,
                 transcript=s.behaviour.user_transcript, usage={"type": "duration", "seconds": end_ms / 1000})


def _start_response(s: FakeSession) -> None:
    if s.active_response is not None:
        return
    s.active_response = new_id("resp")
    s.response_task = asyncio.create_task(_respond(s, s.active_response))


async def _respond(s: FakeSession, response_id: str) -> None:
    try:
        if s.behaviour.call_tools and s.tool_output is None and s.session.get("tools"):
            await _call_tool(s, response_id)
        else:
            await _stream_response(s, response_id)
    except ConnectionClosed:
        pass  # the gateway hung up mid-reply


async def _call_tool(s: FakeSession, response_id: str) -> None:
    """A response that is one function call to the session's first tool, as OpenAI streams it."""
    tool = s.session["tools"][0]
    item_id, call_id, arguments = new_id("item"), new_id("call"), s.behaviour.tool_arguments
    item = {"id": item_id, "object": "realtime.item", "type": "function_call", "status": "in_progress",
            "name": tool.get("name", "tool"), "call_id": call_id, "arguments": ""}
    base = {"response_id": response_id, "item_id": item_id, "output_index": 0, "call_id": call_id}
    try:
        await s.send("response.created", response={"id": response_id, "object": "realtime.response",
                                                   "status": "in_progress", "output": []})
        await s.send("response.output_item.added", response_id=response_id, output_index=0, item=item)
        await s.send("conversation.item.added", previous_item_id=s.last_item, item=item)
        s.items[item_id] = {"role": None, "audio_ms": 0, "truncated": False}
        s.last_item = item_id
        await s.send("response.function_call_arguments.delta", **base, delta=arguments)
        await s.send("response.function_call_arguments.done", **base, name=item["name"], arguments=arguments)
        done = {**item, "status": "completed", "arguments": arguments}
        await s.send("response.output_item.done", response_id=response_id, output_index=0, item=done)
        await s.send("conversation.item.done", previous_item_id=None, item=done)
    finally:
        s.active_response = None
        s.response_task = None
    await s.send("response.done", response={"id": response_id, "object": "realtime.response", "status": "completed",
                                            "output": [done]})


async def _stream_response(s: FakeSession, response_id: str) -> None:
    b = s.behaviour
    text, pitch_hz = b.reply_text, b.reply_pitch_hz
    if s.tool_output is not None:  # the answer after a tool call: it says what the tool returned
        text, pitch_hz, s.tool_output = s.tool_output, b.tool_reply_pitch_hz, None
    s.turns += 1
    item_id = new_id("item")
    status = "completed"
    base = {"response_id": response_id, "item_id": item_id, "output_index": 0, "content_index": 0}
    try:
        if b.fatal_error_after_turns is not None and s.turns > b.fatal_error_after_turns:
            await s.send_error("You exceeded your current quota.", "insufficient_quota")
            await s.connection.close()
            return
        await s.send("response.created", response={"id": response_id, "object": "realtime.response",
                                                   "status": "in_progress", "output": []})
        item = {"id": item_id, "object": "realtime.item", "type": "message", "role": "assistant",
                "status": "in_progress", "content": []}
        s.items[item_id] = {"role": "assistant", "audio_ms": 0, "truncated": False, "transcript": text}
        await s.send("response.output_item.added", response_id=response_id, output_index=0, item=item)
        await s.send("conversation.item.added", previous_item_id=s.last_item, item=item)
        s.last_item = item_id
        await s.send("response.content_part.added", **{k: v for k, v in base.items()},
                     part={"type": "audio", "transcript": ""})
        audio = voiced(b.reply_seconds, pitch_hz, RATE, seed=s.turns)
        words = text.split()
        chunk = RATE // 10  # 100 ms deltas
        chunks = range(0, len(audio), chunk)
        for n, start in enumerate(chunks):
            piece = audio[start:start + chunk]
            await s.send("response.output_audio.delta", **base, delta=base64.b64encode(piece.tobytes()).decode())
            s.items[item_id]["audio_ms"] += len(piece) * 1000 // RATE
            if n < len(words):
                await s.send("response.output_audio_transcript.delta", **base, delta=words[n] + " ")
            await asyncio.sleep(0.1 / b.speed)
        await s.send("response.output_audio.done", **base)
        await s.send("response.output_audio_transcript.done", **base, transcript=text)
    except asyncio.CancelledError:
        status = "cancelled"
    finally:
        s.active_response = None
        s.response_task = None
    part = {"type": "audio", "transcript": text}
    await s.send("response.content_part.done", **base, part=part)
    done_item = {"id": item_id, "object": "realtime.item", "type": "message", "role": "assistant",
                 "status": "completed" if status == "completed" else "incomplete",
                 "content": [{"type": "output_audio", "transcript": text}]}
    await s.send("response.output_item.done", response_id=response_id, output_index=0, item=done_item)
    await s.send("conversation.item.done", previous_item_id=None, item=done_item)
    await s.send("response.done", response={"id": response_id, "object": "realtime.response", "status": status,
                                            "output": [done_item]})
