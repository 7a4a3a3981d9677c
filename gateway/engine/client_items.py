"""Conversation items a client creates (``conversation.item.create``), checked and made engine items.

The engine takes messages (role user, assistant or system), ``function_call`` items and the
``function_call_output`` that answers a call; anything else is refused with the field at fault.
"""

from __future__ import annotations

from typing import Any

from ..core.events import new_id
from .dialogue import Item


class ItemRefused(ValueError):
    """The item cannot be taken: ``message`` and ``param`` go into the ``error`` event."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


def item_from_spec(spec: dict[str, Any]) -> Item:
    """The engine's item for the client's ``item`` object; raises :class:`ItemRefused`."""
    kind = spec.get("type", "message")
    item_id = spec.get("id") or new_id("item")
    if kind == "function_call_output":
        if not isinstance(spec.get("call_id"), str) or not spec["call_id"]:
            raise ItemRefused("A function_call_output item needs the 'call_id' of the call it answers.",
                              "item.call_id")
        return Item(item_id, "tool", "function_call_output", str(spec.get("output") or ""),
                    type="function_call_output", call_id=spec["call_id"])
    if kind == "function_call":
        if not isinstance(spec.get("name"), str) or not spec["name"]:
            raise ItemRefused("A function_call item needs a 'name'.", "item.name")
        return Item(item_id, "assistant", "function_call", type="function_call", name=spec["name"],
                    call_id=str(spec.get("call_id") or new_id("call")), arguments=str(spec.get("arguments") or "{}"))
    role = spec.get("role")
    if kind != "message" or role not in ("user", "assistant", "system"):
        raise ItemRefused("Only message items (role user, assistant or system), function_call and "
                          "function_call_output items are supported.", "item")
    parts = spec.get("content") or []
    text = " ".join(str(p.get("text") or p.get("transcript") or "") for p in parts).strip()
    content_type = {"user": "input_text", "system": "input_text", "assistant": "output_text"}[role]
    return Item(item_id, role, content_type, text)
