"""One Realtime session of the local engine, without I/O.

Client events and VAD scores go in; server events (``outbox``) and work orders (``commands``:
transcribe this turn, generate that response, stop it) come out. The runner in ``server.py``
executes the work with the models and reports back through the ``response_*`` and
``transcribed`` methods, so every event the client sees is built here, in protocol order.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.audio_format import UPSTREAM_RATE as RATE
from ..core.events import Event, error_event, new_id, server_event
from ..core.policy import merge_session
from .commands import Cancel, Command, Respond, Transcribe
from .dialogue import Dialogue, Item, Piece
from .llm import SPOKEN_STYLE
from .vad import TAIL_MS, TurnDetector, TurnEvent, detector_for

MIN_COMMIT_MS = 100


@dataclass
class _Response:
    id: str
    item: Item
    status: str = "in_progress"
    transcript: list[str] = field(default_factory=list)


def default_session() -> dict[str, Any]:
    return {
        "type": "realtime", "object": "realtime.session", "id": new_id("sess"), "model": "local",
        "output_modalities": ["audio"], "instructions": "Você é um assistente de voz prestativo.",
        "audio": {
            "input": {"format": {"type": "audio/pcm", "rate": RATE},
                      "transcription": {"model": "whisper-base", "language": "pt"},
                      "turn_detection": {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
                                         "silence_duration_ms": 500, "create_response": True,
                                         "interrupt_response": True}},
            "output": {"format": {"type": "audio/pcm", "rate": RATE}, "voice": "alloy"},
        },
    }


class EngineSession:
    def __init__(self) -> None:
        self.session = default_session()
        self.dialogue = Dialogue()
        self.outbox: list[Event] = []
        self.commands: list[Command] = []
        self._audio: list[np.ndarray] = []  # input buffer since the last commit/clear
        self._buffer_start_ms = 0.0  # stream position of the buffer's first sample
        self._stream_ms = 0.0  # all audio ever appended
        self._detector: TurnDetector | None = None
        self._speech_item: str | None = None
        self.response: _Response | None = None
        self._configure_vad()

    # --- helpers -----------------------------------------------------------------------------

    def _send(self, kind: str, **fields: Any) -> None:
        self.outbox.append(server_event(kind, **fields))

    def _error(self, message: str, code: str, event_id: str | None, param: str | None = None) -> None:
        self.outbox.append(error_event(message, code=code, event_id=event_id, param=param))

    def _turn_detection(self) -> dict[str, Any] | None:
        return self.session["audio"]["input"].get("turn_detection")

    def _configure_vad(self) -> None:
        self._detector = detector_for(self.session)

    def instructions(self) -> str:
        return f"{self.session.get('instructions') or ''}\n{SPOKEN_STYLE}".strip()

    # --- client events -----------------------------------------------------------------------

    def handle(self, event: Event) -> None:
        handler = _HANDLERS.get(event["type"])
        if handler is None:
            self._error(f"Invalid event type '{event['type']}'.", "invalid_event", event.get("event_id"), "type")
            return
        try:
            handler(self, event)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            self._error(f"Malformed '{event['type']}' event: {exc!r}.", "invalid_value", event.get("event_id"))

    def _session_update(self, event: Event) -> None:
        update = event["session"]
        if not isinstance(update, dict):
            raise ValueError("'session' must be an object")
        if update.get("type", "realtime") != "realtime":
            self._error("Only realtime sessions are supported.", "invalid_value", event.get("event_id"), "session.type")
            return
        fmt = (update.get("audio", {}).get("input", {}) or {}).get("format")
        if fmt and (fmt.get("type") != "audio/pcm" or fmt.get("rate", RATE) != RATE):
            self._error("Only audio/pcm at 24000 Hz is supported.", "invalid_value", event.get("event_id"),
                        "session.audio.input.format")
            return
        merged = merge_session(self.session, update)
        turn_detection_changed = "turn_detection" in ((update.get("audio") or {}).get("input") or {})
        if turn_detection_changed:  # replaced as a whole, like OpenAI does
            merged["audio"]["input"]["turn_detection"] = update["audio"]["input"]["turn_detection"]
            detector = detector_for(merged)  # a bad value raises here, before anything changes
        self.session = merged
        if turn_detection_changed:
            self._detector = detector
        self._send("session.updated", session=self.session)

    def append_audio(self, pcm: np.ndarray, scores: list[tuple[float, float]]) -> None:
        """Audio from ``input_audio_buffer.append`` with its VAD scores (computed by the runner)."""
        self._audio.append(pcm)
        self._stream_ms += len(pcm) * 1000 / RATE
        if self._detector is None:
            return
        for probability, end_ms in scores:
            turn = self._detector.push(probability, end_ms)
            if turn is None:
                continue
            td = self._turn_detection() or {}
            if turn.event is TurnEvent.PAUSED:
                pcm, key = self._turn_audio(turn.audio_ms)
                self.commands.append(Transcribe(None, pcm, self._language(), key))
            elif turn.event is TurnEvent.STARTED:
                self._speech_item = new_id("item")
                self._send("input_audio_buffer.speech_started", audio_start_ms=turn.audio_ms,
                           item_id=self._speech_item)
                self._drop_before(turn.audio_ms)
                if self.response is not None and td.get("interrupt_response", True):
                    self.cancel_response()
            else:
                item_id = self._speech_item or new_id("item")
                self._send("input_audio_buffer.speech_stopped", audio_end_ms=turn.audio_ms, item_id=item_id)
                self._commit(item_id, end_ms=turn.audio_ms)
                if td.get("create_response", True):
                    self._start_response()

    def _drop_before(self, ms: float) -> None:
        """Forget buffered audio older than ``ms`` (the prefix padding is all a turn keeps)."""
        pcm = np.concatenate(self._audio) if self._audio else np.zeros(0, np.int16)
        cut = max(0, int((ms - self._buffer_start_ms) * RATE / 1000))
        self._audio = [pcm[cut:]]
        self._buffer_start_ms += cut * 1000 / RATE

    def _turn_audio(self, end_ms: float | None) -> tuple[np.ndarray, tuple[float, float]]:
        """The buffered audio a commit at ``end_ms`` (None: everything) takes, and its key."""
        pcm = np.concatenate(self._audio) if self._audio else np.zeros(0, np.int16)
        if end_ms is not None:
            pcm = pcm[:max(0, int((end_ms - self._buffer_start_ms + TAIL_MS) * RATE / 1000))]
        return pcm, (self._buffer_start_ms, self._buffer_start_ms + len(pcm) * 1000 / RATE)

    def _language(self) -> str | None:
        transcription = self.session["audio"]["input"].get("transcription") or {}
        return transcription.get("language")

    def _commit(self, item_id: str, end_ms: float | None = None, event_id: str | None = None) -> bool:
        pcm, key = self._turn_audio(end_ms)
        if len(pcm) * 1000 / RATE < MIN_COMMIT_MS:
            self._error(f"Error committing input audio buffer: buffer too small. Expected at least "
                        f"{MIN_COMMIT_MS}ms of audio, but buffer only has {len(pcm) * 1000 // RATE}ms.",
                        "input_audio_buffer_commit_empty", event_id)
            return False
        self._audio = []
        self._buffer_start_ms = self._stream_ms
        item = Item(item_id, "user", "input_audio")
        previous = self.dialogue.add(item)
        self._send("input_audio_buffer.committed", previous_item_id=previous, item_id=item_id)
        self._send("conversation.item.added", previous_item_id=previous, item=item.to_json())
        self._send("conversation.item.done", previous_item_id=previous, item=item.to_json())
        self.commands.append(Transcribe(item_id, pcm, self._language(), key))
        return True

    def _input_audio_buffer_commit(self, event: Event) -> None:
        self._commit(new_id("item"), event_id=event.get("event_id"))

    def _input_audio_buffer_clear(self, event: Event) -> None:
        self._audio = []
        self._buffer_start_ms = self._stream_ms
        if self._detector is not None:
            self._detector.reset()
        self._send("input_audio_buffer.cleared")

    def transcribed(self, item_id: str, text: str, seconds: float) -> None:
        item = self.dialogue.get(item_id)
        if item is None:
            return  # deleted meanwhile
        item.text = text
        self._send("conversation.item.input_audio_transcription.delta", item_id=item_id, content_index=0, delta=text)
        self._send("conversation.item.input_audio_transcription.completed", item_id=item_id, content_index=0,
                   transcript=text, usage={"type": "duration", "seconds": round(seconds, 3)})

    # --- items -------------------------------------------------------------------------------

    def _conversation_item_create(self, event: Event) -> None:
        spec = event["item"]
        role = spec.get("role")
        if spec.get("type", "message") != "message" or role not in ("user", "assistant", "system"):
            self._error("Only message items with role user, assistant or system are supported.",
                        "invalid_value", event.get("event_id"), "item")
            return
        parts = spec.get("content") or []
        text = " ".join(str(p.get("text") or p.get("transcript") or "") for p in parts).strip()
        kind = {"user": "input_text", "system": "input_text", "assistant": "output_text"}[role]
        item = Item(spec.get("id") or new_id("item"), role, kind, text)
        previous_id = event.get("previous_item_id")
        if previous_id is not None and previous_id not in self.dialogue:
            self._error(f"previous_item_id '{previous_id}' does not exist.", "item_not_found",
                        event.get("event_id"), "previous_item_id")
            return
        previous = self.dialogue.add(item, previous_id)
        self._send("conversation.item.added", previous_item_id=previous, item=item.to_json())
        self._send("conversation.item.done", previous_item_id=previous, item=item.to_json())

    def _item_or_error(self, event: Event) -> Item | None:
        item = self.dialogue.get(event["item_id"])
        if item is None:
            self._error(f"Item '{event['item_id']}' does not exist.", "item_not_found", event.get("event_id"),
                        "item_id")
        return item

    def _conversation_item_retrieve(self, event: Event) -> None:
        item = self._item_or_error(event)
        if item is not None:
            self._send("conversation.item.retrieved", item=item.to_json())

    def _conversation_item_delete(self, event: Event) -> None:
        if self._item_or_error(event) is not None:
            self.dialogue.delete(event["item_id"])
            self._send("conversation.item.deleted", item_id=event["item_id"])

    def _conversation_item_truncate(self, event: Event) -> None:
        item = self._item_or_error(event)
        if item is None:
            return
        end_ms = int(event["audio_end_ms"])
        if item.role != "assistant" or not item.pieces:
            self._error("Only assistant audio items can be truncated.", "invalid_value", event.get("event_id"),
                        "item_id")
        elif not 0 <= end_ms <= item.audio_ms:
            self._error(f"Audio content of {item.audio_ms}ms is already shorter than {end_ms}ms.",
                        "invalid_value", event.get("event_id"), "audio_end_ms")
        else:
            item.truncate(end_ms)
            self._send("conversation.item.truncated", item_id=item.id, content_index=0, audio_end_ms=end_ms)

    # --- responses ---------------------------------------------------------------------------

    def _response_create(self, event: Event) -> None:
        if self.response is not None:
            self._error("Conversation already has an active response in progress.",
                        "conversation_already_has_active_response", event.get("event_id"))
            return
        options = event.get("response") or {}
        if not isinstance(options, dict):
            raise ValueError("'response' must be an object")
        self._start_response(options)

    def _start_response(self, options: dict[str, Any] | None = None) -> None:
        """Open a response; ``options`` (from response.create) override the session's settings."""
        if self.response is not None:
            return
        settings = merge_session(self.session, options or {})
        audio = "audio" in (settings.get("output_modalities") or ["audio"])
        output = (settings.get("audio") or {}).get("output") or {}
        max_tokens = settings.get("max_output_tokens")
        response_id = new_id("resp")
        item = Item(new_id("item"), "assistant", "output_audio" if audio else "output_text", "", "in_progress")
        self.response = _Response(response_id, item)
        self._send("response.created", response={"id": response_id, "object": "realtime.response",
                                                 "status": "in_progress", "output": []})
        previous = self.dialogue.add(item)
        self._send("response.output_item.added", response_id=response_id, output_index=0, item=item.to_json())
        self._send("conversation.item.added", previous_item_id=previous, item=item.to_json())
        part = {"type": "audio", "transcript": ""} if audio else {"type": "text", "text": ""}
        self._send("response.content_part.added", response_id=response_id, item_id=item.id, output_index=0,
                   content_index=0, part=part)
        instructions = (options or {}).get("instructions")
        self.commands.append(Respond(response_id, f"{instructions}\n{SPOKEN_STYLE}" if instructions
                                     else self.instructions(), audio, output.get("voice"),
                                     float(output.get("speed") or 1.0),
                                     max_tokens if isinstance(max_tokens, int) else None))

    def _ids(self) -> dict[str, Any]:
        assert self.response is not None
        return {"response_id": self.response.id, "item_id": self.response.item.id, "output_index": 0,
                "content_index": 0}

    def response_piece(self, response_id: str, text: str, pcm: np.ndarray | None) -> None:
        """The runner finished one piece: its text, and its audio unless the response is text-only."""
        response = self.response
        if response is None or response.id != response_id:
            return  # cancelled meanwhile: nothing more of it may reach the client
        item = response.item
        spoken = (" " if response.transcript else "") + text
        response.transcript.append(text)
        item.text = " ".join(response.transcript)
        if pcm is None:
            self._send("response.output_text.delta", **self._ids(), delta=spoken)
            return
        item.pieces.append(Piece(text, len(pcm)))
        self._send("response.output_audio_transcript.delta", **self._ids(), delta=spoken)
        for start in range(0, len(pcm), RATE // 5):  # 200 ms deltas
            chunk = pcm[start:start + RATE // 5]
            self._send("response.output_audio.delta", **self._ids(),
                       delta=base64.b64encode(chunk.tobytes()).decode("ascii"))

    def response_finished(self, response_id: str) -> None:
        if self.response is not None and self.response.id == response_id:
            self._finish("completed")

    def cancel_response(self, event_id: str | None = None) -> None:
        if self.response is None:
            self._error("Cancellation failed: no active response found", "response_cancel_not_active", event_id)
            return
        self.commands.append(Cancel(self.response.id))
        self._finish("cancelled")

    def _response_cancel(self, event: Event) -> None:
        self.cancel_response(event.get("event_id"))

    def _finish(self, status: str) -> None:
        response = self.response
        assert response is not None
        self.response = None
        item = response.item
        item.status = "completed" if status == "completed" else "incomplete"
        ids = {"response_id": response.id, "item_id": item.id, "output_index": 0, "content_index": 0}
        text = item.text or ""
        if item.content_type == "output_audio":
            self._send("response.output_audio.done", **ids)
            self._send("response.output_audio_transcript.done", **ids, transcript=text)
            part = {"type": "audio", "transcript": text}
        else:
            self._send("response.output_text.done", **ids, text=text)
            part = {"type": "text", "text": text}
        self._send("response.content_part.done", **ids, part=part)
        self._send("response.output_item.done", response_id=response.id, output_index=0, item=item.to_json())
        self._send("conversation.item.done", previous_item_id=None, item=item.to_json())
        self._send("response.done", response={"id": response.id, "object": "realtime.response", "status": status,
                                              "output": [item.to_json()]})


_HANDLERS = {
    "session.update": EngineSession._session_update,
    "input_audio_buffer.commit": EngineSession._input_audio_buffer_commit,
    "input_audio_buffer.clear": EngineSession._input_audio_buffer_clear,
    "conversation.item.create": EngineSession._conversation_item_create,
    "conversation.item.retrieve": EngineSession._conversation_item_retrieve,
    "conversation.item.delete": EngineSession._conversation_item_delete,
    "conversation.item.truncate": EngineSession._conversation_item_truncate,
    "response.create": EngineSession._response_create,
    "response.cancel": EngineSession._response_cancel,
}
