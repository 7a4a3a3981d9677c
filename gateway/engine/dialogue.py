"""The engine's conversation: items as the Realtime protocol shows them, and as the LLM reads them."""

from __future__ import annotations

import collections
import json
from dataclasses import dataclass, field
from typing import Any

from ..core.audio_format import UPSTREAM_RATE as RATE
from ..core.heard import ELLIPSIS, cut_at_heard


@dataclass
class Piece:
    """One synthesized stretch of an assistant reply: its text and how many samples it lasted."""

    text: str
    samples: int


@dataclass
class Item:
    """A message (``content_type`` input_audio | input_text | output_audio | output_text), a
    ``function_call`` the model made, or the ``function_call_output`` the client answered with."""

    id: str
    role: str  # user | assistant | system (messages); assistant (function_call); tool (function_call_output)
    content_type: str
    text: str | None = None  # a message's text; a function_call_output's output
    status: str = "completed"
    pieces: list[Piece] = field(default_factory=list)
    truncated: bool = False
    type: str = "message"  # message | function_call | function_call_output
    name: str = ""
    call_id: str = ""
    arguments: str = ""
    llm_text: str | None = None  # the reply exactly as the LLM wrote it (its prompt cache starts with it)

    @property
    def audio_ms(self) -> int:
        return sum(p.samples for p in self.pieces) * 1000 // RATE

    def to_json(self) -> dict[str, Any]:
        base: dict[str, Any] = {"id": self.id, "object": "realtime.item", "type": self.type, "status": self.status}
        if self.type == "function_call":
            return {**base, "name": self.name, "call_id": self.call_id, "arguments": self.arguments}
        if self.type == "function_call_output":
            return {**base, "call_id": self.call_id, "output": self.text or ""}
        if self.content_type == "input_audio":
            part: dict[str, Any] = {"type": "input_audio", "transcript": self.text}
        elif self.content_type == "output_audio":
            part = {"type": "output_audio", "transcript": self.text or ""}
        elif self.content_type == "output_text":
            part = {"type": "output_text", "text": self.text or ""}
        else:
            part = {"type": "input_text", "text": self.text or ""}
        return {**base, "role": self.role, "content": [part]}

    def truncate(self, audio_end_ms: int) -> None:
        """Keep only what was heard: whole pieces played, and the played share of the cut piece."""
        keep = audio_end_ms * RATE // 1000
        kept_pieces, kept_text = [], []
        for piece in self.pieces:
            if keep <= 0:
                break
            if piece.samples <= keep:
                kept_pieces.append(piece)
                kept_text.append(piece.text)
                keep -= piece.samples
            else:
                heard = cut_at_heard(piece.text, keep / piece.samples)
                kept_pieces.append(Piece(heard.removesuffix(ELLIPSIS), keep))
                if heard:
                    kept_text.append(heard)
                keep = 0
        self.pieces = kept_pieces
        self.text = " ".join(kept_text)
        self.truncated = True
        self.llm_text = None

    def chat_message(self) -> dict[str, Any] | None:
        """This item as a chat message for the LLM's prompt (None: nothing to say)."""
        if self.type == "function_call":
            try:
                arguments: Any = json.loads(self.arguments or "{}")
            except ValueError:
                arguments = self.arguments
            return {"role": "assistant", "content": "", "tool_calls": [{"name": self.name, "arguments": arguments}]}
        if self.type == "function_call_output":
            return {"role": "tool", "content": self.text or ""}
        text = (self.llm_text if self.llm_text is not None else self.text or "").strip()
        return {"role": self.role, "content": text} if text else None


class Dialogue:
    """Ordered items, bounded so a long session's memory and prompt stay small."""

    MAX_ITEMS = 200

    def __init__(self) -> None:
        self._items: collections.OrderedDict[str, Item] = collections.OrderedDict()

    def __contains__(self, item_id: str) -> bool:
        return item_id in self._items

    def get(self, item_id: str) -> Item | None:
        return self._items.get(item_id)

    @property
    def last_id(self) -> str | None:
        return next(reversed(self._items), None)

    def add(self, item: Item, previous_item_id: str | None = None) -> str | None:
        """Insert after ``previous_item_id`` (default: at the end); returns the actual predecessor."""
        if previous_item_id is None or previous_item_id == self.last_id:
            predecessor = self.last_id
            self._items[item.id] = item
        else:
            entries = list(self._items.items())
            index = [key for key, _ in entries].index(previous_item_id) + 1
            entries.insert(index, (item.id, item))
            self._items = collections.OrderedDict(entries)
            predecessor = previous_item_id
        while len(self._items) > self.MAX_ITEMS:
            self._items.popitem(last=False)
        return predecessor

    def delete(self, item_id: str) -> bool:
        return self._items.pop(item_id, None) is not None

    def messages(self, instructions: str, budget_chars: int = 6000) -> list[dict[str, Any]]:
        """Chat messages for the LLM: the instructions, then the most recent turns that fit. An
        assistant message and the function calls right after it are one turn, as the model wrote it."""
        turns: list[dict[str, Any]] = []
        used = 0
        for item in reversed(self._items.values()):
            message = item.chat_message()
            if message is None:
                continue
            used += len(json.dumps(message, ensure_ascii=False))
            if used > budget_chars:
                break
            turns.append(message)
        turns.reverse()
        merged: list[dict[str, Any]] = []
        for message in turns:
            previous = merged[-1] if merged else None
            if (message.get("tool_calls") and previous is not None and previous["role"] == "assistant"):
                previous["tool_calls"] = [*previous.get("tool_calls", []), *message["tool_calls"]]
            else:
                merged.append(dict(message))
        return [{"role": "system", "content": instructions}, *merged]
