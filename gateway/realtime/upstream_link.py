"""The call's link to the Realtime API: one socket at a time, replaced without hanging up.

A socket that drops or fails is reopened with bounded backoff while the WebRTC call stays up;
before the provider's session cap (60 min at OpenAI) the session is replaced at a quiet moment.
Either way the conversation core replays the configuration and earlier turns into the new
session. Only a fatal error (bad key, quota) or a reconnect budget spent ends the call.

Ownership: the call runs :meth:`UpstreamLink.run` in its TaskGroup; ``run`` owns, per socket,
a writer task and a roll-over watcher, both cancelled before the socket is closed. A message
sent while nothing is queued and the socket is open and not backed up is written at once
(:meth:`~gateway.realtime.upstream.Upstream.send_now`), without a trip through the writer task.

The send queue is bounded, since a stalled or reconnecting upstream must not grow memory:
mic audio beyond :data:`MAX_QUEUED_AUDIO` appends is dropped (the call's ``CallState`` drops
earlier, this is the backstop), and an event beyond ``upstream_max_queued_events`` or
``upstream_max_queued_bytes`` is refused with an ``error`` to the client echoing its id.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable

from websockets.exceptions import ConnectionClosed

from ..config import Config
from ..core.conversation import Conversation, State
from ..core.events import Event, error_event
from ..core.reconnect import ReconnectPolicy
from ..server.metrics import GatewayMetrics
from .upstream import Upstream, UpstreamError, auth_headers, realtime_url

logger = logging.getLogger(__name__)

MAX_QUEUED_AUDIO = 500  # 10 s of 20 ms appends, twice what CallState lets through


class LinkFailed(Exception):
    """The call cannot go on: ``reason`` for the logs, ``error`` for the client."""

    def __init__(self, reason: str, error: Event) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error


class UpstreamLink:
    def __init__(self, config: Config, conversation: Conversation, metrics: GatewayMetrics,
                 on_event: Callable[[Event], None], on_flush: Callable[[], None]) -> None:
        self._config = config
        self._conversation = conversation
        self._metrics = metrics
        self._on_event = on_event
        self._on_flush = on_flush
        # (serialized event, is audio, when its RTP arrived — None when it was made here, e.g.
        # concealment): audio and events in one ordered stream.
        self.queue: asyncio.Queue[tuple[str, bool, float | None]] = asyncio.Queue()
        self.queued_audio = 0
        self.queued_events = 0  # non-audio messages waiting, and their size (characters of JSON)
        self.queued_bytes = 0
        self.dropped_audio = 0  # appends dropped at the backstop
        self.refused_events = 0  # events refused with an error to the client
        self.connects = 0
        self.first_connect_s: float | None = None
        self._rolling_over = False
        self._reconnect = ReconnectPolicy(config.upstream_reconnect_timeout_s)
        self._live: Upstream | None = None  # the socket the writer serves, once restored: see send()
        self.sent_direct = 0  # messages written at once, without the queue and the writer task

    def send(self, message: str, *, audio: bool = False, received_at: float | None = None) -> bool:
        """Queue ``message`` for the upstream; False when the queue is full and it was dropped
        (an event's client is told with an ``error`` through the conversation)."""
        if audio:
            if self.queued_audio >= MAX_QUEUED_AUDIO:
                self.dropped_audio += 1
                return False
            self.queued_audio += 1
        else:
            config = self._config
            if (self.queued_events >= config.upstream_max_queued_events
                    or self.queued_bytes + len(message) > config.upstream_max_queued_bytes):
                self._refuse(message)
                return False
            self.queued_events += 1
            self.queued_bytes += len(message)
        live = self._live
        if live is not None and self.queue.empty() and live.send_now(message):
            # Nothing waits in front of it and the socket takes it: written now, which keeps the
            # order the writer would (it only ever takes from a non-empty queue) and saves the
            # writer task's wake-up, a loop step of latency per message.
            self.sent_direct += 1
            if audio:
                self.queued_audio -= 1
                if received_at is not None:
                    self._metrics.inbound_latency.observe(time.monotonic() - received_at)
            else:
                self.queued_events -= 1
                self.queued_bytes -= len(message)
            return True
        self.queue.put_nowait((message, audio, received_at))
        return True

    def _refuse(self, message: str) -> None:
        self.refused_events += 1
        try:
            event_id = json.loads(message).get("event_id")
        except (ValueError, AttributeError):
            event_id = None
        logger.warning("upstream send queue full (%d events, %d bytes waiting): event %s dropped",
                       self.queued_events, self.queued_bytes, event_id)
        self._conversation.notify_client(error_event(
            "The assistant's connection is not keeping up; this event was dropped. Try again shortly.",
            code="upstream_backlog", type_="server_error", event_id=event_id if isinstance(event_id, str) else None))

    async def run(self) -> None:
        """Keep a session open until cancelled; raises :class:`LinkFailed` when it must stop."""
        while True:
            started = time.monotonic()
            try:
                upstream = await self._connect()
            except UpstreamError as exc:
                self._metrics.upstream_error(exc.code)
                delay = self._reconnect.failed(time.monotonic(), fatal=exc.fatal)
                if delay is None:
                    raise LinkFailed(exc.code, error_event(exc.public, code=exc.code, type_="server_error")) from None
                logger.warning("upstream reconnect failed (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                continue
            self._reconnect.connected()
            self.connects += 1
            connect_s = time.monotonic() - started
            self._metrics.upstream_connect.observe(connect_s)
            if self.first_connect_s is None:
                self.first_connect_s = connect_s
            reason = await self._serve(upstream)
            planned = reason == "rollover"
            logger.info("upstream session ended (%s): %s", reason,
                        "moving to a new session" if planned else "reconnecting")
            self._conversation.upstream_lost(reason, quietly=planned)
            self._on_flush()
            self._reconnect.lost(time.monotonic())

    async def _connect(self) -> Upstream:
        config = self._config
        return await Upstream.connect(realtime_url(config.realtime_url, config.model),
                                      auth_headers(config.upstream_auth_header, config.upstream_api_key),
                                      config.upstream_connect_timeout_s, config.upstream_ping_s)

    async def _serve(self, upstream: Upstream) -> str:
        """One socket's life: restore first, then relay; returns why it ended."""
        self._rolling_over = False
        ended = "closed by the upstream"
        try:
            self._conversation.upstream_opened()
            for event in self._conversation.data_to_upstream():  # configuration before any audio
                await upstream.send(event)
            async with asyncio.TaskGroup() as tasks:
                writer = tasks.create_task(self._write(upstream), name="upstream-writer")
                watcher = tasks.create_task(self._watch_session_age(upstream), name="upstream-rollover")
                self._live = upstream
                try:
                    async for event in upstream.events():
                        self._on_event(event)
                finally:
                    self._live = None
                    writer.cancel()
                    watcher.cancel()
            if self._rolling_over:
                ended = "rollover"
        except* (UpstreamError, ConnectionClosed) as group:
            error = group.exceptions[0]
            ended = error.code if isinstance(error, UpstreamError) else "connection closed"
        finally:
            self._live = None
            try:
                await asyncio.wait_for(upstream.close(), 2.0)
            except (TimeoutError, OSError):
                pass
        return ended

    async def _write(self, upstream: Upstream) -> None:
        """The socket's writer after set-up for whatever had to wait (a backed-up socket, a
        backlog): :meth:`send` writes directly only while this queue is empty, so audio and
        events keep their order."""
        inbound_latency = self._metrics.inbound_latency
        while True:
            message, audio, received_at = await self.queue.get()
            if audio:  # counted out now: a send cut short by a closure loses the message either way
                self.queued_audio -= 1
            else:
                self.queued_events -= 1
                self.queued_bytes -= len(message)
            try:
                await upstream.send_text(message)
            except ConnectionClosed:
                return  # the reader sees the closure and decides what happens next
            if received_at is not None:
                inbound_latency.observe(time.monotonic() - received_at)

    async def _watch_session_age(self, upstream: Upstream) -> None:
        """Past the configured session age, close at the first quiet moment (nobody talking)."""
        limit = self._config.upstream_session_max_s
        if not limit:
            return
        await asyncio.sleep(limit)
        while not (self._conversation.quiet and self._conversation.state is State.READY):
            await asyncio.sleep(0.1)
        self._rolling_over = True
        await upstream.close()
