"""Realtime (OpenAI GA dialect) wire-protocol helpers shared by the gateway and the local engine.

Only plain data lives here: ids, event constructors and the lists of event types each side
may send. Which event follows which is decided elsewhere (``conversation.py`` for the gateway,
``engine/session.py`` for the local engine).
"""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any

Event = dict[str, Any]

# Client → server events the gateway forwards upstream (GA names).
FORWARDED_CLIENT_EVENTS = frozenset(
    {
        "session.update",
        "response.create",
        "response.cancel",
        "conversation.item.create",
        "conversation.item.retrieve",
        "conversation.item.delete",
        "conversation.item.truncate",
        "input_audio_buffer.clear",
        "input_audio_buffer.commit",
    }
)
# Client → server events the gateway answers itself (WebRTC-only in OpenAI's interface).
GATEWAY_CLIENT_EVENTS = frozenset({"output_audio_buffer.clear"})

# Server → client audio travels as RTP media, never on the data channel.
AUDIO_DELTA_EVENTS = frozenset({"response.output_audio.delta", "response.audio.delta"})

def new_id(prefix: str) -> str:
    """An OpenAI-style id (``event_…``, ``item_…``, ``resp_…``): unguessable and unique."""
    return f"{prefix}_{secrets.token_hex(10)}"


def new_event_id() -> str:
    return new_id("event")


def server_event(type_: str, **fields: Any) -> Event:
    """A server event with a fresh ``event_id``."""
    return {"type": type_, "event_id": new_event_id(), **fields}


def error_event(
    message: str,
    *,
    code: str | None = None,
    type_: str = "invalid_request_error",
    param: str | None = None,
    event_id: str | None = None,
) -> Event:
    """The GA ``error`` server event; ``event_id`` echoes the client event that caused it."""
    return server_event(
        "error",
        error={"type": type_, "code": code, "message": message, "param": param, "event_id": event_id},
    )


def decode_audio(data: str) -> bytes:
    return base64.b64decode(data, validate=True)


APPEND_PREFIX = '{"type":"input_audio_buffer.append","audio":"'


def append_message(pcm: bytes) -> str:
    """``input_audio_buffer.append`` serialized without a JSON encoder (it is sent 50 times a second)."""
    return APPEND_PREFIX + base64.b64encode(pcm).decode("ascii") + '"}'


def dumps(event: Event) -> str:
    """Compact JSON, the form events take on the wire."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)


class ProtocolError(ValueError):
    """A message that is not a Realtime event; ``code`` goes into the ``error`` event."""

    def __init__(self, message: str, code: str = "invalid_event", event_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.event_id = event_id


# Deeper than any Realtime event (a tool's JSON schema included); a limit keeps every walk
# over an event (policy, history, serialization) far from Python's recursion limit.
MAX_DEPTH = 64


def depth(value: Any) -> int:
    """How deeply ``value`` nests (a scalar is 0), walked without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        level += 1
        if level > deepest:
            deepest = level
            if deepest > MAX_DEPTH:
                break
        stack.extend((child, level) for child in children)
    return deepest


def loads(text: str | bytes) -> Event:
    """Parse one event, rejecting anything that is not a JSON object with a string ``type``
    (or that nests deeper than :data:`MAX_DEPTH`)."""
    try:
        event = json.loads(text)
    except RecursionError:
        raise ProtocolError(f"The event nests deeper than {MAX_DEPTH} levels.", "invalid_event") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"The message is not valid JSON: {exc}", "invalid_json") from None
    if not isinstance(event, dict):
        raise ProtocolError("An event must be a JSON object.")
    if depth(event) > MAX_DEPTH:
        event_id = event.get("event_id")
        raise ProtocolError(f"The event nests deeper than {MAX_DEPTH} levels.", "invalid_event",
                            event_id if isinstance(event_id, str) else None)
    if not isinstance(event.get("type"), str):
        raise ProtocolError("The event has no string 'type' field.", "missing_type")
    if "event_id" in event and not isinstance(event["event_id"], str):
        raise ProtocolError("The event's 'event_id' must be a string.")
    return event
