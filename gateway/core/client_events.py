"""Which of the browser's client events go on, in what form, and the ``error`` a refused one gets.

Sans-I/O: one function the conversation core calls for every client event, before it is
queued or forwarded. A ``session.update`` goes on without the fields the policy keeps (see
``policy.py``: that is never an error, only a log line); a ``response.create`` or
``conversation.item.create`` that would get round a locked field is refused. A refusal echoes
the event's ``event_id`` and names the field in ``param`` so the client can match it.
"""

from __future__ import annotations

import logging
from typing import Any

from .events import FORWARDED_CLIENT_EVENTS, GATEWAY_CLIENT_EVENTS, Event, error_event
from .policy import PolicyError, SessionPolicy
from .session_fields import RESPONSE_FIELDS, to_ga

logger = logging.getLogger(__name__)


def _unsupported(event: Event) -> Event:
    if event["type"] == "input_audio_buffer.append":
        message = ("Audio travels as WebRTC media on this connection; "
                   "input_audio_buffer.append is not accepted on the data channel.")
    else:
        message = f"Unknown or unsupported client event type '{event['type']}'."
    return error_event(message, code="invalid_event", param="type", event_id=event.get("event_id"))


def _admit(event: Event, policy: SessionPolicy, session: dict[str, Any]) -> Event:
    kind = event["type"]
    if kind == "session.update":
        update, renamed = to_ga(event.get("session"))
        cleaned, kept = policy.strip(update, session)
        if kept or renamed:
            logger.info("session.update: kept the gateway's %s; beta fields mapped: %s",
                        ", ".join(kept) or "-", ", ".join(renamed) or "-")
        return {**event, "session": cleaned}
    if kind == "response.create":
        response, renamed = to_ga(event.get("response"), RESPONSE_FIELDS)
        policy.check_response(response, session)
        return {**event, "response": response} if renamed else event
    if kind == "conversation.item.create":
        policy.check_item(event.get("item"))
    return event


def admit(event: Event, policy: SessionPolicy, session: dict[str, Any]) -> tuple[bool, Event]:
    """``(True, event as it goes on)`` or ``(False, the error refusing it)``, given the effective
    ``session`` (a locked field equal to its value is no change)."""
    if event["type"] not in FORWARDED_CLIENT_EVENTS and event["type"] not in GATEWAY_CLIENT_EVENTS:
        return False, _unsupported(event)
    try:
        return True, _admit(event, policy, session)
    except PolicyError as exc:
        logger.info("%s refused: %s", event["type"], exc)
        return False, error_event(str(exc), code=exc.code, param=exc.param, event_id=event.get("event_id"))
