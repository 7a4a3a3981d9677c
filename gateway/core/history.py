"""The conversation so far, as text, so a new upstream session can pick up where the last one was.

Realtime sessions end: the socket drops, or the provider's cap (60 min at OpenAI) is reached.
The new session gets the configuration again and every earlier turn as a text item — user turns
as their transcripts, assistant turns as what the user actually heard of them (cut where the
user interrupted). Sans-I/O: fed the same upstream events the conversation core sees.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any

from .events import Event, new_id
from .heard import cut_at_heard

MAX_TURNS = 60
_READ_ONLY_SESSION_FIELDS = ("id", "object", "expires_at")


@dataclass
class Turn:
    role: str  # user | assistant | system
    text: str = ""
    audio_ms: int = 0  # assistant audio received, to cut the text where playback was cut
    final: bool = False


class History:
    def __init__(self) -> None:
        self._turns: collections.OrderedDict[str, Turn] = collections.OrderedDict()

    def __len__(self) -> int:
        return sum(1 for turn in self._turns.values() if turn.text)

    def turns(self) -> list[Turn]:
        return [turn for turn in self._turns.values() if turn.text]

    def _turn(self, item_id: str, role: str) -> Turn:
        turn = self._turns.get(item_id)
        if turn is None:
            turn = self._turns[item_id] = Turn(role)
            while len(self._turns) > MAX_TURNS:
                self._turns.popitem(last=False)
        return turn

    def observe(self, event: Event) -> None:
        kind = event.get("type")
        if kind in ("conversation.item.added", "conversation.item.done", "conversation.item.created"):
            item = event.get("item") or {}
            role = item.get("role")
            if item.get("type") == "message" and role in ("user", "assistant", "system") and item.get("id"):
                turn = self._turn(item["id"], role)
                text = " ".join(str(part.get("text") or "") for part in item.get("content") or []
                                if part.get("type") in ("input_text", "output_text", "text")).strip()
                if text and not turn.final:
                    turn.text = text
        elif kind == "conversation.item.input_audio_transcription.completed":
            turn = self._turn(event["item_id"], "user")
            turn.text, turn.final = str(event.get("transcript") or ""), True
        elif kind in ("response.output_audio_transcript.delta", "response.output_text.delta"):
            turn = self._turn(event["item_id"], "assistant")
            if not turn.final:
                turn.text += str(event.get("delta") or "")
        elif kind in ("response.output_audio_transcript.done", "response.output_text.done"):
            turn = self._turn(event["item_id"], "assistant")
            if not turn.final:
                turn.text = str(event.get("transcript", event.get("text")) or turn.text)
                turn.final = True
        elif kind == "conversation.item.truncated":
            self.heard(event["item_id"], int(event.get("audio_end_ms", 0)))
        elif kind == "conversation.item.deleted":
            self._turns.pop(str(event.get("item_id")), None)

    def audio(self, item_id: str, ms: int) -> None:
        self._turn(item_id, "assistant").audio_ms += ms

    def heard(self, item_id: str, audio_end_ms: int) -> None:
        """Keep only the words the user heard of an interrupted reply (spoken at an even pace)."""
        turn = self._turns.get(item_id)
        if turn is None or turn.audio_ms <= 0:
            return
        turn.text = cut_at_heard(turn.text, audio_end_ms / turn.audio_ms)
        turn.final = True

    def replay(self) -> list[Event]:
        """``conversation.item.create`` events restoring every turn as text, oldest first."""
        events = []
        for turn in self.turns():
            part_type = "output_text" if turn.role == "assistant" else "input_text"
            events.append({"type": "conversation.item.create", "event_id": new_id("event_gw"), "item": {
                "id": new_id("item_gw")[:32], "type": "message", "role": turn.role,
                "content": [{"type": part_type, "text": turn.text}]}})
        return events


def resumable_session(session: dict[str, Any]) -> dict[str, Any]:
    """The session as a ``session.update`` may carry it: no server-assigned or empty fields."""
    return {key: value for key, value in session.items() if key not in _READ_ONLY_SESSION_FIELDS and value is not None}
