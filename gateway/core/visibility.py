"""What the browser sees of what the application's backend does on its call (sideband).

A backend attached to a call (``GET /v1/realtime?call_id=…``) is trusted and private: it sees
every event, and what it sets of the session's *private fields* — ``instructions``, ``tools``,
``tool_choice`` — is taken out of every session the browser is shown from then on, so the
browser never learns the backend's prompt or tool definitions. The errors the backend's own
events cause (a refused event, the upstream rejecting a tool) go to the backend alone.

OpenAI's guide to server-side controls does not say what the client connection sees of what
the server connection sets; this is the gateway's choice, the safe one. What the model *does*
with a tool is still a conversation item both sides see (``function_call``, its output), as
it is one conversation.

Sans-I/O. Calling contract (one object per call, for the call's whole life, so fields stay
hidden after the backend disconnects):

- :meth:`Visibility.from_backend` for every client event of the backend, before it goes on:
  it returns the event to pass on, under an ``event_id`` of the gateway's (so a browser using
  the same id as the backend still gets its own errors).
- :meth:`Visibility.for_browser` for every server event meant for the browser: what the
  browser gets instead (``None``: nothing).
- :meth:`Visibility.for_backend` for the same events: what the backend gets (everything,
  unredacted, its errors naming the ``event_id`` it chose).
"""

from __future__ import annotations

import collections
from collections.abc import Mapping

from .events import Event, new_id

PRIVATE_FIELDS = ("instructions", "tools", "tool_choice")
_SESSION_EVENTS = frozenset({"session.created", "session.updated"})
MAX_REMEMBERED_IDS = 1000  # event ids of the backend whose errors are its own (the latest)


class Visibility:
    def __init__(self, *, max_remembered_ids: int = MAX_REMEMBERED_IDS) -> None:
        self.hidden: set[str] = set()  # private fields the backend has set
        # The gateway's id of each recent backend event → the backend's own (None: it had none).
        self._ids: collections.OrderedDict[str, str | None] = collections.OrderedDict()
        self._max_ids = max_remembered_ids

    def from_backend(self, event: Event) -> Event:
        own_id = event.get("event_id")
        event_id = new_id("event_sb")
        self._ids[event_id] = own_id if isinstance(own_id, str) else None
        if len(self._ids) > self._max_ids:
            self._ids.popitem(last=False)
        session = event.get("session")
        if event.get("type") == "session.update" and isinstance(session, Mapping):
            self.hidden.update(field for field in PRIVATE_FIELDS if field in session)
        return {**event, "event_id": event_id}

    def for_browser(self, event: Event) -> Event | None:
        kind = event.get("type")
        if kind == "error":
            return None if self._caused_by_backend(event) is not None else event
        session = event.get("session")
        if kind in _SESSION_EVENTS and self.hidden and isinstance(session, Mapping):
            return {**event, "session": {key: value for key, value in session.items() if key not in self.hidden}}
        return event

    def for_backend(self, event: Event) -> Event:
        event_id = self._caused_by_backend(event)
        if event_id is None:
            return event
        own_id = self._ids[event_id]
        return {**event, "error": {**event["error"], "event_id": own_id}}

    def _caused_by_backend(self, event: Event) -> str | None:
        """The gateway's id of the backend event an ``error`` answers, if it answers one."""
        if event.get("type") != "error":
            return None
        error = event.get("error")
        event_id = error.get("event_id") if isinstance(error, Mapping) else None
        return event_id if isinstance(event_id, str) and event_id in self._ids else None
