"""The Realtime conversation as the gateway sees it, without I/O.

Events from the upstream and from the browser's data channel go in; events for each side come
out (``data_to_upstream`` / ``data_to_client``), and 20 ms frames for the outbound track are
pulled with :meth:`Conversation.next_frame`. Everything that decides *what happens* lives here:
when the session is ready, which client events the policy refuses, which response is active,
how much of a reply the user heard, and what a barge-in sends upstream. The adapters in
``server/call.py`` only move bytes, which keeps this file drivable event by event from unit tests.

Calling contract (the caller owns the clock: every ``now`` is its monotonic time in seconds):

- :meth:`Conversation.upstream_opened` when a socket opens, then send
  :meth:`~Conversation.data_to_upstream` before anything else (the session configuration, and
  after a reconnect the restored conversation); :meth:`Conversation.upstream_lost` when it ends.
- :meth:`Conversation.receive_upstream` for every upstream event and
  :meth:`Conversation.receive_client` for every data-channel message, each with ``now``.
- :meth:`Conversation.input_audio_sent` for every append sent, so speech boundaries (which the
  upstream reports in input-buffer milliseconds) can be dated.
- :meth:`Conversation.next_frame` once per 20 ms tick of the outbound track.
- :meth:`Conversation.peer_lost` when the browser vanished.
- After any of these, drain :meth:`~Conversation.data_to_upstream` and
  :meth:`~Conversation.data_to_client` (in that order is fine; each keeps its own order) and, for
  metrics, :meth:`~Conversation.drain_measurements`. :attr:`Conversation.fatal_error` set means
  the call must end.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from . import upstream_errors
from .audio_format import upstream_ms
from .client_events import admit
from .events import AUDIO_DELTA_EVENTS, Event, ProtocolError, decode_audio, error_event, loads, new_id, server_event
from .history import History, resumable_session
from .playout import PlayedItem, Playout, Transition
from .policy import SessionPolicy
from .turn_stats import InputClock, Measurements, TurnStats
from .upstream_errors import FATAL_ERROR_CODES, for_client

logger = logging.getLogger(__name__)
MAX_PENDING_CLIENT_EVENTS = 100
TRUSTED_POLICY = SessionPolicy.from_fields(())  # the application's own backend: audio formats only


class State(enum.Enum):
    CONNECTING = "connecting"    # upstream socket not open yet
    CONFIGURING = "configuring"  # our session.update sent, waiting for session.updated
    READY = "ready"
    RECONNECTING = "reconnecting"  # the upstream session ended; a new one is being opened
    RESTORING = "restoring"      # configuration and earlier turns replayed, waiting for the acks


class Conversation:
    """Sans-I/O gateway side of one Realtime call."""

    def __init__(self, session: Mapping[str, Any], policy: SessionPolicy, *,
                 playout_delay_ms: int = 60, max_queued_audio_s: float = 120.0) -> None:
        self.session: dict[str, Any] = dict(session)
        self.state = State.CONNECTING
        self.stats = TurnStats()
        self._measured = Measurements()
        self.fatal_error: dict[str, Any] | None = None  # set when the call must end
        self._policy = policy
        self._playout_delay_ms = playout_delay_ms
        self._playout = Playout(max_queued_audio_s)
        self._to_upstream: list[Event] = []
        self._to_client: list[Event] = []
        self._pending_client: list[tuple[Event, SessionPolicy]] = []  # with the policy that admitted each
        self._internal_ids: set[str] = set()
        self._initial_update_id: str | None = None
        self._held_created: Event | None = None
        self._active_response: str | None = None
        self._last_response: str = ""
        self._discarded: set[str] = set()  # responses whose late audio must not play
        self._input_clock = InputClock()
        self._speech_ended_at: float | None = None
        self._user_speaking = False
        self.history = History()
        self._restore_acks: set[str] = set()  # item ids (and "session") the restore still awaits
        self._restore_quietly = False
        self._cut_at: float | None = None

    # --- outputs -----------------------------------------------------------------------------

    def data_to_upstream(self) -> list[Event]:
        out, self._to_upstream = self._to_upstream, []
        return out

    def data_to_client(self) -> list[Event]:
        out, self._to_client = self._to_client, []
        return out

    def drain_measurements(self) -> Measurements:
        """The timings taken since the last call (turn latency, barge-in, outbound wait), once each."""
        measured, self._measured = self._measured, Measurements()
        measured.outbound_latency_s, self._playout.added_latencies = self._playout.added_latencies, []
        return measured

    @property
    def audio_queued(self) -> bool:
        """Model audio is waiting to be sent (not just silence going out)."""
        return self._playout.has_queued_audio

    @property
    def audio_dropped_s(self) -> float:
        """Model audio dropped because too much was already waiting to play (see ``playout.py``)."""
        return self._playout.dropped_s

    # --- upstream side -----------------------------------------------------------------------

    @property
    def quiet(self) -> bool:
        """Nobody is talking: the moment to move to a new upstream session unnoticed."""
        return (self.state is State.READY and self._active_response is None and not self._playout.is_active
                and not self._user_speaking and not self._pending_client)

    def upstream_opened(self) -> None:
        """The socket is open: configure the session before anything else reaches it; a
        replacement session also gets the conversation so far."""
        if self.state is State.RECONNECTING:
            self._send_internal("session.update", session=resumable_session(self.session))
            replay = self.history.replay()
            for event in replay:
                self._send_internal(event["type"], item=event["item"])
            self._restore_acks = {"session", *(event["item"]["id"] for event in replay)}
            self.state = State.RESTORING
            return
        self._initial_update_id = self._send_internal("session.update", session=self.session)
        self.state = State.CONFIGURING

    def peer_lost(self, now: float) -> None:
        """The browser vanished: nothing more can be heard, so the reply stops where it was cut."""
        if self._playout.is_active or self._active_response is not None:
            self._interrupt(cancel=True, reason="peer_lost", now=now, measured=False)

    def upstream_lost(self, reason: str, *, quietly: bool = False) -> None:
        """The upstream session ended; say so (unless it is a planned roll-over) and settle
        whatever was in flight, so the client is never left waiting for a ``response.done``."""
        if not quietly:
            self._to_client.append(upstream_errors.reconnecting_error(reason))
        response_id = self._active_response
        if response_id is not None:
            self._to_client.append(upstream_errors.lost_response_done(response_id))
            self._active_response = None
            self._playout.complete(response_id)  # what already arrived still plays
        self._user_speaking = False
        self._restore_quietly = quietly
        self.state = State.RECONNECTING

    def input_audio_sent(self, samples_24k: int, now: float) -> None:
        self._input_clock.sent(samples_24k, now)

    def receive_upstream(self, event: Event, now: float) -> None:
        kind = event.get("type")
        if kind in AUDIO_DELTA_EVENTS:
            self._on_audio_delta(event, now)
            return
        if self.state is State.CONFIGURING and self._configuring(event, now):
            return
        if self.state is State.RESTORING:
            self._restoring(event, now)
            return
        self.history.observe(event)
        if kind == "error":
            self._on_error(event)
            return
        if kind == "session.updated":
            self.session = event.get("session", self.session)
        elif kind == "response.created":
            response_id = event.get("response", {}).get("id")
            self._active_response = response_id
            self._last_response = response_id or self._last_response
        elif kind == "response.done":
            response_id = event.get("response", {}).get("id")
            if response_id == self._active_response:
                self._active_response = None
            self._to_client.append(for_client(event))  # before output_audio_buffer.stopped, as OpenAI orders them
            if response_id:
                self._discarded.discard(response_id)
                self._emit_transitions(self._playout.complete(response_id), now)
            return
        elif kind == "input_audio_buffer.speech_started":
            self._user_speaking = True
            if self._playout.is_active and self._interrupts():
                self._to_client.append(event)
                self._interrupt(cancel=True, reason="speech", now=now)
                return
        elif kind == "input_audio_buffer.speech_stopped":
            self._user_speaking = False
            end_ms = event.get("audio_end_ms")
            self._speech_ended_at = (self._input_clock.time_of(end_ms) if isinstance(end_ms, (int, float))
                                     else None) or now
        self._to_client.append(for_client(event))

    def _configuring(self, event: Event, now: float) -> bool:
        """Hide the session handshake: the client sees one ``session.created`` with our config."""
        kind = event.get("type")
        if kind == "session.created":
            self._held_created = event
            return True
        if kind == "session.updated":
            self.session = event.get("session", self.session)
            self._become_ready(now)
            return True
        if kind == "error" and event.get("error", {}).get("event_id") == self._initial_update_id:
            self._to_client.append(upstream_errors.rejected_configuration(event["error"]))
            self._become_ready(now)
            return True
        return False

    def _restoring(self, event: Event, now: float) -> None:
        """Hide the replacement session's handshake and replay; READY once all were acknowledged."""
        kind = event.get("type")
        if kind == "session.updated":
            self.session = event.get("session", self.session)
            self._restore_acks.discard("session")
        elif kind in ("conversation.item.added", "conversation.item.done", "conversation.item.created"):
            self._restore_acks.discard((event.get("item") or {}).get("id"))
        elif kind == "error":
            logger.warning("upstream refused part of the restored conversation: %s", event.get("error"))
            error = event.get("error") or {}
            if error.get("code") in FATAL_ERROR_CODES:
                self.fatal_error = error
        if not self._restore_acks:
            if not self._restore_quietly:
                self._to_client.append(server_event("session.updated", session=self.session))
            self.state = State.READY
            pending, self._pending_client = self._pending_client, []
            for pending_event, policy in pending:
                self._client_event(pending_event, now, policy)

    def _become_ready(self, now: float) -> None:
        created = self._held_created or {}
        self._to_client.append({"type": "session.created",
                                "event_id": created.get("event_id") or new_id("event"),
                                "session": self.session})
        self.state = State.READY
        pending, self._pending_client = self._pending_client, []
        for event, policy in pending:
            self._client_event(event, now, policy)

    def _on_error(self, event: Event) -> None:
        error = event.get("error") or {}
        code = error.get("code")
        if code in upstream_errors.SESSION_END_ERRORS:
            logger.info("upstream session reached its end: %s", error.get("message"))
            return
        if error.get("event_id") in self._internal_ids and code in upstream_errors.BENIGN_INTERNAL_ERRORS:
            logger.debug("ignored upstream error for our own event: %s", error)
            return
        if code in FATAL_ERROR_CODES:
            self.fatal_error = error
        self._to_client.append(for_client(event))

    def _on_audio_delta(self, event: Event, now: float) -> None:
        response_id = event.get("response_id")
        item_id = event.get("item_id")
        if not isinstance(response_id, str) or not isinstance(item_id, str):
            return
        if response_id in self._discarded:
            return
        try:
            pcm = np.frombuffer(decode_audio(event.get("delta", "")), np.int16)
        except (ValueError, TypeError):
            logger.warning("upstream sent an undecodable audio delta for %s", item_id)
            return
        self.history.audio(item_id, int(upstream_ms(len(pcm))))
        content_index = event.get("content_index", 0)
        self._playout.enqueue(response_id, item_id, pcm, content_index if isinstance(content_index, int) else 0,
                              arrived_at=now)

    # --- client side -------------------------------------------------------------------------

    def receive_client(self, message: str | bytes, now: float) -> None:
        try:
            event = loads(message)
        except ProtocolError as exc:
            self._to_client.append(error_event(str(exc), code=exc.code, event_id=exc.event_id))
            return
        self._client_event(event, now)

    def notify_client(self, event: Event) -> None:
        """An event for the client from an adapter (the link refusing an event), in its place in the order."""
        self._to_client.append(event)

    def lock(self, fields: Iterable[str]) -> None:
        """From now on the browser may not change ``fields`` either (the backend set them)."""
        self._policy = self._policy.with_locked(fields)

    def receive_trusted(self, event: Event, now: float) -> None:
        """A client event from the application's own backend (a sideband connection, the
        embedding API): only the gateway's own limits apply (audio formats), not the policy."""
        self._client_event(event, now, TRUSTED_POLICY)

    def _client_event(self, event: Event, now: float, policy: SessionPolicy | None = None) -> None:
        policy = policy or self._policy
        admitted, event = admit(event, policy, self.session)  # event: what goes on, or the refusal
        if not admitted:
            self._to_client.append(event)
            return
        kind = event["type"]
        event_id = event.get("event_id")
        if self.state is not State.READY:
            if len(self._pending_client) >= MAX_PENDING_CLIENT_EVENTS:
                self._to_client.append(error_event(
                    "Too many events before the session is ready.", code="rate_limited", event_id=event_id))
            else:
                self._pending_client.append((event, policy))
            return
        if kind == "output_audio_buffer.clear":
            self._interrupt(cancel=True, reason="client_clear", always_report=True, now=now)
            return
        if kind == "response.cancel":
            self._to_upstream.append(event)
            self._interrupt(cancel=False, reason="client_cancel", now=now)
            return
        self._to_upstream.append(event)

    # --- outbound audio ----------------------------------------------------------------------

    def next_frame(self, now: float) -> np.ndarray:
        """The next 20 ms, 48 kHz frame for the outbound track (silence when idle)."""
        if self._cut_at is not None:
            self._measured.barge_in_s.append(now - self._cut_at)
            self._cut_at = None
        frame = self._playout.next_frame(now)
        if frame.transitions:
            self._emit_transitions(frame.transitions, now)
        return frame.pcm

    def _emit_transitions(self, transitions: list[tuple[Transition, str]], now: float) -> None:
        for transition, response_id in transitions:
            if transition is Transition.STARTED:
                self._to_client.append(server_event("output_audio_buffer.started", response_id=response_id))
                if self._speech_ended_at is not None:
                    latency = now - self._speech_ended_at
                    self.stats.turns += 1
                    self.stats.latencies_s.append(latency)
                    self._measured.turn_latency_s.append(latency)
                    self._speech_ended_at = None
            else:
                self._to_client.append(server_event("output_audio_buffer.stopped", response_id=response_id))

    # --- barge-in ----------------------------------------------------------------------------

    def _interrupts(self) -> bool:
        detection = self.session.get("audio", {}).get("input", {}).get("turn_detection") or {}
        return bool(detection.get("interrupt_response", True))

    def _interrupt(self, *, cancel: bool, reason: str, now: float, always_report: bool = False,
                   measured: bool = True) -> None:
        """Silence the reply now and tell the upstream exactly how much of it was heard; ``measured``:
        the next frame out is the barge-in's latency (not so when nobody is there to hear it)."""
        playing = self._playout.playing_response
        touched = self._playout.flush()
        if touched and measured:
            self._cut_at = now  # the next frame out is silence: that wait is the barge-in latency
        response_id = self._active_response
        if response_id is not None and self.state is State.READY:
            if cancel and response_id not in self._discarded:
                self._send_internal("response.cancel", response_id=response_id)
            self._discarded.add(response_id)
        for item in touched:
            self._settle_item(item)
        if touched:
            self.stats.interruptions += 1
        if touched or always_report:
            self._to_client.append(server_event(
                "output_audio_buffer.cleared", response_id=playing or response_id or self._last_response))
        logger.info("barge-in (%s): %d item(s) cut", reason, len(touched))

    def _settle_item(self, item: PlayedItem) -> None:
        heard_ms = min(item.played_ms - self._playout_delay_ms, item.received_ms)
        if self.state is not State.READY:  # the item lives in a session that is gone
            self.history.heard(item.item_id, max(0, heard_ms))
            return
        if heard_ms > 0:
            self._send_internal("conversation.item.truncate", item_id=item.item_id,
                                content_index=item.content_index, audio_end_ms=heard_ms)
        else:
            self._send_internal("conversation.item.delete", item_id=item.item_id)

    def _send_internal(self, kind: str, **fields: Any) -> str:
        event_id = new_id("event_gw")
        self._internal_ids.add(event_id)
        self._to_upstream.append({"type": kind, "event_id": event_id, **fields})
        return event_id
