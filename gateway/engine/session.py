"""One Realtime session of the local engine, without I/O.

Client events and VAD scores go in; server events (``outbox``) and work orders (``commands``:
transcribe this turn, generate that response, stop it) come out. The runner (``session_runner.py``)
executes the work with the models and reports back through ``transcribed``,
``response_piece``, ``response_function_call`` and ``response_finished``, so every event the
client sees is built here (a response's own events by :class:`~.response_output.ResponseOutput`),
in protocol order.

Audio is bounded: between turns only the prefix padding is kept, and the uncommitted buffer
never holds more than ``max_input_ms`` (the oldest audio goes, with one ``error``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.audio_format import UPSTREAM_RATE as RATE
from ..core.events import Event, error_event, new_id, server_event
from ..core.policy import merge_session
from .client_items import ItemRefused, item_from_spec
from .commands import Cancel, Command, DropEarly, Respond, Transcribe
from .dialogue import Dialogue, Item
from .input_buffer import InputAudioBuffer
from .llm import SPOKEN_STYLE
from .prompt import function_tools
from .response_output import ActiveResponse, ResponseOutput
from .vad import TAIL_MS, TurnDetector, TurnEvent, detector_for

MIN_COMMIT_MS = 100
IDLE_KEEP_MS = 600  # between turns: enough for any prefix padding plus the VAD's lag
PARTIAL_EVERY_MS = 1200  # while the user talks, the words so far are transcribed this often
DEFAULT_INSTRUCTIONS = "Você é um assistente de voz prestativo."


def default_session(instructions: str = DEFAULT_INSTRUCTIONS) -> dict[str, Any]:
    return {
        "type": "realtime", "object": "realtime.session", "id": new_id("sess"), "model": "local",
        "output_modalities": ["audio"], "instructions": instructions, "tools": [], "tool_choice": "auto",
        "audio": {
            "input": {"format": {"type": "audio/pcm", "rate": RATE},
                      "transcription": {"model": "whisper-base", "language": "pt"},
                      "turn_detection": {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
                                         "silence_duration_ms": 500, "create_response": True,
                                         "interrupt_response": True}},
            "output": {"format": {"type": "audio/pcm", "rate": RATE}, "voice": "alloy"},
        },
    }


def _tool_choice(value: Any) -> str:
    """``tool_choice`` as the runner takes it: auto | none | required | a function's name."""
    if isinstance(value, dict):
        return str(value.get("name") or (value.get("function") or {}).get("name") or "auto")
    return value if value in ("auto", "none", "required") else "auto"


class EngineSession:
    def __init__(self, instructions: str = DEFAULT_INSTRUCTIONS, max_input_ms: float = 30_000) -> None:
        self.session = default_session(instructions)
        self.dialogue = Dialogue()
        self.outbox: list[Event] = []
        self.commands: list[Command] = []
        self._buffer = InputAudioBuffer(max_input_ms)
        self._overflow_reported = False
        self._detector: TurnDetector | None = None
        self._speech_item: str | None = None
        self._transcribed_until_ms = 0.0  # stream position of the last early or partial transcription
        self._output = ResponseOutput(self.dialogue, self._send)
        self._configure_vad()

    @property
    def response(self) -> ActiveResponse | None:
        """The response in progress, if any."""
        return self._output.current

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

    @property
    def buffered_ms(self) -> float:
        """Uncommitted input audio held (bounded by ``max_input_ms``)."""
        return self._buffer.ms

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
        if "tools" in update and not isinstance(update["tools"], list):
            raise ValueError("'tools' must be a list")
        merged = merge_session(self.session, update)
        turn_detection_changed = "turn_detection" in ((update.get("audio") or {}).get("input") or {})
        if turn_detection_changed:  # replaced as a whole, like OpenAI does
            merged["audio"]["input"]["turn_detection"] = update["audio"]["input"]["turn_detection"]
            detector = detector_for(merged)  # a bad value raises here, before anything changes
        self.session = merged
        if turn_detection_changed:
            self._detector = detector
        self._send("session.updated", session=self.session)

    def append_audio(self, pcm: np.ndarray, scores: list[tuple[float, float]], event_id: str | None = None) -> None:
        """Audio from ``input_audio_buffer.append`` with its VAD scores (computed by the runner)."""
        if self._buffer.append(pcm) and not self._overflow_reported:
            self._overflow_reported = True
            limit = self._buffer.max_samples / RATE
            self._error(f"The input audio buffer holds at most {limit:.0f} seconds of uncommitted audio: the "
                        "oldest audio was dropped. Commit or clear the buffer (or use turn detection).",
                        "input_audio_buffer_overflow", event_id)
        if self._detector is None:
            return
        for probability, end_ms in scores:
            turn = self._detector.push(probability, end_ms)
            if turn is not None:
                self._on_turn(turn.event, turn.audio_ms)
        if not self._detector.in_speech:
            self._buffer.keep_last(IDLE_KEEP_MS + self._detector.prefix_padding_ms)
        elif self._buffer.end_ms - self._transcribed_until_ms >= PARTIAL_EVERY_MS:
            # A long turn: its words so far, so the LLM can read them before the turn ends.
            self._transcribed_until_ms = self._buffer.end_ms
            pcm, key = self._buffer.audio()
            self.commands.append(self._transcribe(None, pcm, key, partial=True))

    def _on_turn(self, event: TurnEvent, audio_ms: int) -> None:
        td = self._turn_detection() or {}
        if event is TurnEvent.PAUSED:
            self._transcribed_until_ms = self._buffer.end_ms
            pcm, key = self._buffer.audio(audio_ms + TAIL_MS)
            draft = self._respond_command("draft") if td.get("create_response", True) else None
            self.commands.append(self._transcribe(None, pcm, key, draft))
        elif event is TurnEvent.RESUMED:
            self.commands.append(DropEarly())
        elif event is TurnEvent.STARTED:
            self._speech_item = new_id("item")
            self._transcribed_until_ms = self._buffer.end_ms
            self._send("input_audio_buffer.speech_started", audio_start_ms=audio_ms, item_id=self._speech_item)
            self._buffer.drop_before(audio_ms)
            if self.response is not None and td.get("interrupt_response", True):
                self.cancel_response()
        else:
            item_id = self._speech_item or new_id("item")
            self._send("input_audio_buffer.speech_stopped", audio_end_ms=audio_ms, item_id=item_id)
            self._commit(item_id, end_ms=audio_ms)
            if td.get("create_response", True):
                self._start_response()

    def _transcribe(self, item_id: str | None, pcm: np.ndarray, key: tuple[float, float], draft: Respond | None = None,
                    partial: bool = False) -> Transcribe:
        """A transcription order with the session's ``transcription`` language and prompt."""
        transcription = self.session["audio"]["input"].get("transcription") or {}
        prompt = transcription.get("prompt")
        return Transcribe(item_id, pcm, transcription.get("language"), key, draft, partial,
                          prompt if isinstance(prompt, str) and prompt.strip() else None)

    def _commit(self, item_id: str, end_ms: float | None = None, event_id: str | None = None) -> bool:
        pcm, key = self._buffer.audio(None if end_ms is None else end_ms + TAIL_MS)
        if len(pcm) * 1000 / RATE < MIN_COMMIT_MS:
            self._error(f"Error committing input audio buffer: buffer too small. Expected at least "
                        f"{MIN_COMMIT_MS}ms of audio, but buffer only has {len(pcm) * 1000 // RATE}ms.",
                        "input_audio_buffer_commit_empty", event_id)
            return False
        self._buffer.clear()
        self._overflow_reported = False
        item = Item(item_id, "user", "input_audio")
        previous = self.dialogue.add(item)
        self._send("input_audio_buffer.committed", previous_item_id=previous, item_id=item_id)
        self._send("conversation.item.added", previous_item_id=previous, item=item.to_json())
        self._send("conversation.item.done", previous_item_id=previous, item=item.to_json())
        self.commands.append(self._transcribe(item_id, pcm, key))
        return True

    def _input_audio_buffer_commit(self, event: Event) -> None:
        self._commit(new_id("item"), event_id=event.get("event_id"))

    def _input_audio_buffer_clear(self, event: Event) -> None:
        self._buffer.clear()
        self._overflow_reported = False
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
        if not isinstance(spec, dict):
            raise ValueError("'item' must be an object")
        previous_id = event.get("previous_item_id")
        if previous_id is not None and previous_id not in self.dialogue:
            self._error(f"previous_item_id '{previous_id}' does not exist.", "item_not_found",
                        event.get("event_id"), "previous_item_id")
            return
        try:
            item = item_from_spec(spec)
        except ItemRefused as refused:
            self._error(str(refused), "invalid_value", event.get("event_id"), refused.param)
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

    def _respond_command(self, response_id: str, options: dict[str, Any] | None = None) -> Respond:
        """The work a response asks for; ``options`` (from response.create) override the session."""
        settings = merge_session(self.session, options or {})
        audio = "audio" in (settings.get("output_modalities") or ["audio"])
        output = (settings.get("audio") or {}).get("output") or {}
        max_tokens = settings.get("max_output_tokens")
        instructions = (options or {}).get("instructions")
        return Respond(response_id, f"{instructions}\n{SPOKEN_STYLE}" if instructions else self.instructions(), audio,
                       output.get("voice"), float(output.get("speed") or 1.0),
                       max_tokens if isinstance(max_tokens, int) else None,
                       function_tools(settings.get("tools")), _tool_choice(settings.get("tool_choice", "auto")))

    def _start_response(self, options: dict[str, Any] | None = None) -> None:
        if self.response is not None:
            return
        command = self._respond_command(new_id("resp"), options)
        self._output.start(command.response_id, command.audio)
        self.commands.append(command)

    def response_piece(self, response_id: str, text: str, pcm: np.ndarray | None, llm_text: str | None = None) -> None:
        """The runner finished one piece: its text, and its audio unless the response is text-only.
        ``llm_text``: the reply so far exactly as the LLM wrote it (kept for its prompt cache)."""
        self._output.piece(response_id, text, pcm, llm_text)

    def response_function_call(self, response_id: str, name: str, arguments: str) -> None:
        """The model called ``name``: its item, its arguments, done; the client answers with a
        ``function_call_output`` item and ``response.create``."""
        self._output.function_call(response_id, name, arguments)

    def response_finished(self, response_id: str, llm_text: str | None = None) -> None:
        """The reply is complete; ``llm_text``: all of it as the LLM wrote it."""
        self._output.finished(response_id, llm_text)

    def cancel_response(self, event_id: str | None = None) -> None:
        if self.response is None:
            self._error("Cancellation failed: no active response found", "response_cancel_not_active", event_id)
            return
        self.commands.append(Cancel(self.response.id))
        self._output.finish("cancelled")

    def _response_cancel(self, event: Event) -> None:
        self.cancel_response(event.get("event_id"))


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
