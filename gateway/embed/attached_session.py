"""A Realtime conversation attached to the application's own peer connection.

One :class:`~gateway.server.call.Call` — conversation core, upstream link with its reconnects
and roll-overs, barge-in — whose peer is an :class:`~.attached_peer.AttachedPeer`. The session
owns the call's task: :meth:`AttachedSession.close` (or the peer connection closing, or the
mic going silent past ``PEER_TIMEOUT``) ends it. Nothing waits to be resumed: an application
that loses its connection attaches again.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import dataclasses
import logging
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any

from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamTrack

from ..config import Config
from ..core.events import Event, dumps, loads
from ..server.call import Call, CallSummary
from ..server.call_registry import new_call_id
from ..server.logs import call_id_var
from .attached_peer import AttachedPeer

logger = logging.getLogger(__name__)

MAX_UNREAD_EVENTS = 1000  # an application that never reads events keeps only the latest


class AttachedSession:
    """The assistant on the application's peer connection: its track out, its events in and out."""

    def __init__(self, pc: RTCPeerConnection, track: MediaStreamTrack, config: Config,
                 session: Mapping[str, Any]) -> None:
        self._events: collections.deque[Event] = collections.deque(maxlen=MAX_UNREAD_EVENTS)
        self._arrived = asyncio.Event()
        self._finished = False
        peers: list[AttachedPeer] = []

        def make_peer(*args: Any, **kwargs: Any) -> AttachedPeer:
            peers.append(AttachedPeer(*args, pc=pc, track=track, deliver=self._deliver, **kwargs))
            return peers[-1]

        self.id = new_call_id("rtc_app_")
        # Nothing to resume: the application owns the connection and attaches again if it wants.
        self._call = Call(self.id, dataclasses.replace(config, resume_grace_s=0.0), session, peer_factory=make_peer)
        self.outbound_track: MediaStreamTrack = peers[0].outbound
        self.summary: CallSummary | None = None
        context = contextvars.copy_context()
        context.run(call_id_var.set, self.id)  # every log line of the conversation names it
        self._task = asyncio.create_task(self._run(), name=f"{self.id}-attached", context=context)

    async def _run(self) -> None:
        try:
            self.summary = await self._call.run()
            logger.info("%s", self.summary.log_line())
        finally:
            self._finished = True
            self._arrived.set()

    def _deliver(self, event: Event) -> None:
        self._events.append(event)
        self._arrived.set()

    # --- public ----------------------------------------------------------------------------------

    @property
    def ended(self) -> bool:
        return self._call.ended

    @property
    def end_reason(self) -> str | None:
        return self._call.end_reason

    async def events(self) -> AsyncIterator[Event]:
        """Every server event of the conversation (GA JSON, as a browser's data channel gets
        them), in order, until it ends; unread events beyond the latest 1000 are dropped."""
        while True:
            while self._events:
                yield self._events.popleft()
            if self._finished:
                return
            self._arrived.clear()
            await self._arrived.wait()

    def send(self, event: Mapping[str, Any]) -> None:
        """A client event (``session.update``, ``response.create``, ``conversation.item.create``…).
        The application is trusted: ``LOCKED_SESSION_FIELDS`` does not apply, the audio formats
        stay the gateway's. Raises ``ValueError`` for something that is not an event."""
        self._call.receive_trusted(loads(dumps(dict(event))))

    async def close(self) -> None:
        """End the conversation and wait until it freed what it holds (the peer connection stays
        the application's: close it yourself)."""
        self._call.end("closed_by_application")
        await asyncio.shield(self._task)

    async def __aenter__(self) -> AttachedSession:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.close()
