"""One engine session's active response, as the events the client sees, in protocol order.

Sans-I/O like :mod:`.session`, which owns it: the runner's results (a spoken piece, a function
call, the end) become ``response.*`` and ``conversation.item.*`` events on the session's outbox.
A response's output items appear when their content does: the spoken message with its first
piece, a ``function_call`` item when the model calls a function (so a response that only calls a
function has only that item, as OpenAI's). Results of a response that is no longer current
(cancelled meanwhile) are dropped: nothing more of it may reach the client.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.audio_format import UPSTREAM_RATE as RATE
from ..core.events import new_id
from .dialogue import Dialogue, Item, Piece

AUDIO_DELTA_SAMPLES = RATE // 5  # 200 ms per response.output_audio.delta


@dataclass
class ActiveResponse:
    id: str
    audio: bool
    output: list[Item] = field(default_factory=list)
    message: Item | None = None  # the open message item, once the reply has said something
    transcript: list[str] = field(default_factory=list)


class ResponseOutput:
    """Starts, fills and finishes a session's one active response (``current``)."""

    def __init__(self, dialogue: Dialogue, send: Callable[..., None]) -> None:
        self._dialogue = dialogue
        self._send = send  # (event type, **fields) onto the session's outbox
        self.current: ActiveResponse | None = None

    def start(self, response_id: str, audio: bool) -> None:
        self.current = ActiveResponse(response_id, audio)
        self._send("response.created", response={"id": response_id, "object": "realtime.response",
                                                 "status": "in_progress", "output": []})

    def _of(self, response_id: str) -> ActiveResponse | None:
        response = self.current
        return response if response is not None and response.id == response_id else None

    def piece(self, response_id: str, text: str, pcm: np.ndarray | None, llm_text: str | None) -> None:
        response = self._of(response_id)
        if response is None:
            return
        item = self._open_message(response)
        spoken = (" " if response.transcript else "") + text
        response.transcript.append(text)
        item.text = " ".join(response.transcript)
        item.llm_text = llm_text
        if pcm is None:
            self._send("response.output_text.delta", **self._ids(response, item), delta=spoken)
            return
        item.pieces.append(Piece(text, len(pcm)))
        self._send("response.output_audio_transcript.delta", **self._ids(response, item), delta=spoken)
        for start in range(0, len(pcm), AUDIO_DELTA_SAMPLES):
            chunk = pcm[start:start + AUDIO_DELTA_SAMPLES]
            self._send("response.output_audio.delta", **self._ids(response, item),
                       delta=base64.b64encode(chunk.tobytes()).decode("ascii"))

    def function_call(self, response_id: str, name: str, arguments: str) -> None:
        response = self._of(response_id)
        if response is None:
            return
        self._close_message(response, "completed")
        item = Item(new_id("item"), "assistant", "function_call", status="in_progress", type="function_call",
                    name=name, call_id=new_id("call"))
        self._add_output(response, item)
        ids = {"response_id": response.id, "item_id": item.id, "output_index": response.output.index(item),
               "call_id": item.call_id}
        self._send("response.function_call_arguments.delta", **ids, delta=arguments)
        self._send("response.function_call_arguments.done", **ids, name=name, arguments=arguments)
        item.arguments, item.status = arguments, "completed"
        self._send("response.output_item.done", response_id=response.id, output_index=ids["output_index"],
                   item=item.to_json())
        self._send("conversation.item.done", previous_item_id=None, item=item.to_json())

    def finished(self, response_id: str, llm_text: str | None) -> None:
        response = self._of(response_id)
        if response is None:
            return
        if response.message is not None and not any(item.type == "function_call" for item in response.output):
            response.message.llm_text = llm_text
        self.finish("completed")

    def finish(self, status: str) -> None:
        """``response.done`` with ``status`` for the current response (there must be one)."""
        response = self.current
        assert response is not None
        self.current = None
        self._close_message(response, status)
        self._send("response.done", response={"id": response.id, "object": "realtime.response", "status": status,
                                              "output": [item.to_json() for item in response.output]})

    # --- items -----------------------------------------------------------------------------------

    def _open_message(self, response: ActiveResponse) -> Item:
        if response.message is not None:
            return response.message
        item = Item(new_id("item"), "assistant", "output_audio" if response.audio else "output_text", "",
                    "in_progress")
        response.message = item
        self._add_output(response, item)
        part = {"type": "audio", "transcript": ""} if response.audio else {"type": "text", "text": ""}
        self._send("response.content_part.added", **self._ids(response, item), part=part)
        return item

    def _add_output(self, response: ActiveResponse, item: Item) -> None:
        previous = self._dialogue.add(item)
        response.output.append(item)
        self._send("response.output_item.added", response_id=response.id, output_index=len(response.output) - 1,
                   item=item.to_json())
        self._send("conversation.item.added", previous_item_id=previous, item=item.to_json())

    @staticmethod
    def _ids(response: ActiveResponse, item: Item) -> dict[str, Any]:
        return {"response_id": response.id, "item_id": item.id, "output_index": response.output.index(item),
                "content_index": 0}

    def _close_message(self, response: ActiveResponse, status: str) -> None:
        item, response.message = response.message, None
        if item is None:
            return
        item.status = "completed" if status == "completed" else "incomplete"
        ids = self._ids(response, item)
        text = item.text or ""
        if item.content_type == "output_audio":
            self._send("response.output_audio.done", **ids)
            self._send("response.output_audio_transcript.done", **ids, transcript=text)
            part = {"type": "audio", "transcript": text}
        else:
            self._send("response.output_text.done", **ids, text=text)
            part = {"type": "text", "text": text}
        self._send("response.content_part.done", **ids, part=part)
        self._send("response.output_item.done", response_id=response.id, output_index=ids["output_index"],
                   item=item.to_json())
        self._send("conversation.item.done", previous_item_id=None, item=item.to_json())
