"""The engine's conversation: items as the Realtime protocol shows them, and as the LLM reads them."""

from __future__ import annotations

import collections
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
    id: str
    role: str  # user | assistant | system
    content_type: str  # input_audio | input_text | output_audio | output_text
    text: str | None = None
    status: str = "completed"
    pieces: list[Piece] = field(default_factory=list)
    truncated: bool = False

    @property
    def audio_ms(self) -> int:
        return sum(p.samples for p in self.pieces) * 1000 // RATE

    def to_json(self) -> dict[str, Any]:
        if self.content_type == "input_audio":
            part: dict[str, Any] = {"type": "input_audio", "transcript": self.text}
        elif self.content_type == "output_audio":
            part = {"type": "output_audio", "transcript": self.text or ""}
        elif self.content_type == "output_text":
            part = {"type": "output_text", "text": self.text or ""}
        else:
            part = {"type": "input_text", "text": self.text or ""}
        return {"id": self.id, "object": "realtime.item", "type": "message", "role": self.role,
                "status": self.status, "content": [part]}

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

    def messages(self, instructions: str, budget_chars: int = 6000) -> list[dict[str, str]]:
        """Chat messages for the LLM: the instructions, then the most recent turns that fit."""
        turns: list[dict[str, str]] = []
        used = 0
        for item in reversed(self._items.values()):
            text = (item.text or "").strip()
            if not text:
                continue
            used += len(text)
            if used > budget_chars:
                break
            turns.append({"role": item.role, "content": text})
        turns.reverse()
        return [{"role": "system", "content": instructions}, *turns]
