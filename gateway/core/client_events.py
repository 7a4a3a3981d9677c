"""Which of the browser's client events go on, and the ``error`` each refused one gets.

Sans-I/O: one function the conversation core calls for every client event, before it is
queued or forwarded. A refusal echoes the event's ``event_id`` so the client can match it.
"""

from __future__ import annotations

from .events import FORWARDED_CLIENT_EVENTS, GATEWAY_CLIENT_EVENTS, Event, error_event
from .policy import PolicyError, SessionPolicy


def refusal(event: Event, policy: SessionPolicy) -> Event | None:
    """The ``error`` event refusing ``event``, or None when it may go on."""
    kind = event["type"]
    event_id = event.get("event_id")
    if kind not in FORWARDED_CLIENT_EVENTS and kind not in GATEWAY_CLIENT_EVENTS:
        if kind == "input_audio_buffer.append":
            message = ("Audio travels as WebRTC media on this connection; "
                       "input_audio_buffer.append is not accepted on the data channel.")
        else:
            message = f"Unknown or unsupported client event type '{kind}'."
        return error_event(message, code="invalid_event", param="type", event_id=event_id)
    if kind == "session.update":
        try:
            policy.check(event.get("session"))
        except PolicyError as exc:
            return error_event(str(exc), code=exc.code, param=exc.param, event_id=event_id)
    return None
