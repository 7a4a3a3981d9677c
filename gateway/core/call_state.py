"""What a call decides besides the Realtime conversation: whether a lost browser may come back,
what its data channel may send, and when mic audio must be dropped.

Sans-I/O: the adapter (``server/call.py``) owns the peer connections, the upstream link and the
clock; it asks this object and does what it answers.

Calling contract:

- :meth:`CallState.client_message` for every data-channel message, before the conversation sees
  it: ``(True, None)`` hands it on; ``(False, error)`` drops it and tells the client ``error``
  (``None``: dropped silently, at most one warning a second is sent).
- :meth:`CallState.mic_frame` for every 20 ms of mic audio: ``False`` drops it (the upstream is
  not keeping up, or is reconnecting); dropped frames are counted in :attr:`dropped_frames`.
- :meth:`CallState.peer_ended` when a browser connection ended: ``True`` means wait up to
  ``resume_grace_s`` for a resume (the call is *suspended*), ``False`` means end the call.
  While suspended, :meth:`CallState.to_client` keeps events for the next connection;
  :meth:`CallState.resumed` hands them back, oldest first.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

from .events import Event, error_event
from .limits import TokenBucket

# Peer endings after which the same browser may come back from a new network.
RESUMABLE_ENDINGS = frozenset({"peer_gone", "ice_failed"})


@dataclass(frozen=True)
class CallLimits:
    resume_grace_s: float = 30.0
    max_client_message: int = 64 * 1024  # SCTP itself allows 256 KiB; no Realtime event needs that
    client_events_per_s: float = 50.0
    client_event_burst: float = 200.0
    max_backlog_audio: int = 250  # 5 s of 20 ms appends held while the upstream connects
    max_backlog_events: int = 500  # events kept for a suspended browser


class CallState:
    def __init__(self, limits: CallLimits, now: float) -> None:
        self._limits = limits
        self._client_rate = TokenBucket(limits.client_events_per_s, limits.client_event_burst, now)
        self._rate_warned_at: float | None = None
        self._backlog: collections.deque[Event] = collections.deque(maxlen=limits.max_backlog_events)
        self.suspended = False
        self.dropped_frames = 0
        self.resumes = 0

    # --- data channel ------------------------------------------------------------------------

    def client_message(self, size: int, now: float) -> tuple[bool, Event | None]:
        limit = self._limits.max_client_message
        if size > limit:
            return False, error_event(f"Events are limited to {limit // 1024} KiB.", code="message_too_large")
        if self._client_rate.take(now):
            return True, None
        if self._rate_warned_at is None or now - self._rate_warned_at >= 1.0:  # one warning a second
            self._rate_warned_at = now
            return False, error_event("Too many events on the data channel; some were dropped.",
                                      code="rate_limited")
        return False, None

    # --- mic ---------------------------------------------------------------------------------

    def mic_frame(self, queued_audio: int) -> bool:
        """Whether a mic frame goes upstream, given the appends already waiting to be sent."""
        if queued_audio >= self._limits.max_backlog_audio:
            self.dropped_frames += 1
            return False
        return True

    # --- browser connections -----------------------------------------------------------------

    def peer_ended(self, reason: str, connected_once: bool) -> bool:
        """Whether the call waits for this browser to resume (it vanished from a working call)."""
        wait = reason in RESUMABLE_ENDINGS and connected_once and self._limits.resume_grace_s > 0
        self.suspended = wait
        return wait

    def to_client(self, event: Event) -> bool:
        """True: send ``event`` now; False: it was kept for the browser's next connection."""
        if self.suspended:
            self._backlog.append(event)
            return False
        return True

    def resumed(self) -> list[Event]:
        """A new connection took over: the events it missed, oldest first."""
        self.suspended = False
        self.resumes += 1
        missed = list(self._backlog)
        self._backlog.clear()
        return missed
