"""One call: a browser's peer connection bound to one upstream Realtime session.

The call owns everything it starts. :meth:`Call.accept` answers the SDP offer; :meth:`Call.run`
(owned by the registry) supervises the call's tasks in one TaskGroup — upstream reader, upstream
writer, mic pump, ICE watchdog — and tears everything down when any of them ends the call, when
the peer disappears, or when :meth:`Call.end` is called (DELETE, shutdown). Decisions belong to
the sans-I/O core — :class:`~gateway.core.conversation.Conversation` for the Realtime events,
:class:`~gateway.core.call_state.CallState` for the browser's connections, data channel and mic
backlog; this module only moves data and supplies the clock. The browser's successive
connections (resume) are :class:`~.call_peers.CallPeers`; what the call reports at hang-up is
:class:`~.call_summary.CallSummary`.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

from aiortc import RTCPeerConnection

from ..config import Config
from ..core.audio_format import UPSTREAM_RATE
from ..core.call_state import CallLimits, CallState
from ..core.conversation import Conversation, State
from ..core.events import Event, append_message, dumps, error_event
from ..core.policy import SessionPolicy
from ..core.stats import percentiles
from ..media.inbound_audio import MicFrame
from ..media.native.shared_media import SharedMedia
from ..realtime.upstream_link import LinkFailed, UpstreamLink
from ..webrtc.browser_peer import BrowserPeer, MicFactory
from ..webrtc.ice import IceServers
from .call_peers import CallPeers
from .call_summary import CallSummary
from .metrics import GatewayMetrics
from .worker_pool import tag

__all__ = ["Call", "CallSummary", "Observer", "new_resume_token"]

logger = logging.getLogger(__name__)

Observer = Callable[[Event], Event | None]  # an event for the browser → what the browser gets


class _HangUp(Exception):
    """Raised inside the call's TaskGroup to cancel every task of the call."""


def new_resume_token(prefix: str = "rsm_") -> str:
    return f"{prefix}{secrets.token_urlsafe(24)}"


class Call:
    def __init__(self, call_id: str, config: Config, session: Mapping[str, Any], *,
                 ice: IceServers | None = None,
                 mic_source: MicFactory | None = None,
                 metrics: GatewayMetrics | None = None, created_at: float | None = None,
                 native_media: SharedMedia | None = None,
                 peer_factory: Callable[..., BrowserPeer] = BrowserPeer) -> None:
        """``peer_factory``: how the call's peer is made (BrowserPeer's arguments); the embedding
        API gives one wrapping a peer connection the application owns."""
        self.id = call_id
        self._config = config
        self._metrics = metrics or GatewayMetrics()
        self._started = created_at if created_at is not None else time.monotonic()
        self._ice = ice or IceServers(config)
        self._mic_source = mic_source
        self.conversation = Conversation(session, SessionPolicy.from_fields(config.locked_session_fields),
                                         playout_delay_ms=config.playout_delay_ms,
                                         max_queued_audio_s=config.playout_max_queued_s)
        self._link = UpstreamLink(config, self.conversation, self._metrics, self._on_upstream_event, self._flush)
        self._observers: list[Observer] = []  # the application's side (sideband): see add_observer
        self._peer_factory = peer_factory
        self._native_media = native_media
        self._state = CallState(CallLimits(resume_grace_s=config.resume_grace_s), self._started)
        self._ended = asyncio.Event()
        self._peers = CallPeers(self._new_peer, self._state, config, self._ended)
        self._resume_prefix = tag("rsm_", config.worker_index, config.instance_id)
        self.resume_token = new_resume_token(self._resume_prefix)
        self.end_reason: str | None = None
        self.lingering_close: asyncio.Future[Any] | None = None  # a close that outlived the call
        self._end_error: Event | None = None
        self._session_ready_ms: float | None = None
        self._audio_in_samples = 0
        self._frames_out = 0
        self._mic_frames: collections.Counter[str] = collections.Counter()

    def _new_peer(self) -> BrowserPeer:
        """A peer configured with the STUN/TURN servers healthy right now (fresh at each resume)."""
        return self._peer_factory(self._config, self._ice.for_gateway(self.id), next_frame=self._next_frame,
                                  on_mic_audio=self._on_mic_audio, on_message=self._on_client_message,
                                  metrics=self._metrics, started=self._started, mic_source=self._mic_source,
                                  native_media=self._native_media)

    @property
    def _peer(self) -> BrowserPeer:
        """The browser's current connection."""
        return self._peers.current

    @property
    def pc(self) -> RTCPeerConnection:
        return self._peer.pc

    @property
    def resumes(self) -> int:
        return self._state.resumes

    # --- signaling ---------------------------------------------------------------------------

    async def accept(self, offer_sdp: str) -> str:
        return await self._accept(self._peer, offer_sdp)

    async def _accept(self, peer: BrowserPeer, offer_sdp: str) -> str:
        """Answer, then refuse at once (400/503 with the cause) an offer no path can connect."""
        answer = await peer.accept(offer_sdp)
        await self._ice.check_candidates(peer.pc, peer.configuration)
        return answer

    async def add_remote_candidates(self, candidates: list[tuple[str | None, str]]) -> None:
        await self._peers.latest.add_remote_candidates(candidates)

    async def resume(self, offer_sdp: str) -> str:
        """A new connection from the same browser takes over the call, its conversation and its
        upstream session (see :meth:`.CallPeers.resume` for when it may), with a fresh resume token."""
        answer = await self._peers.resume(offer_sdp, self._accept)
        self.resume_token = new_resume_token(self._resume_prefix)
        logger.info("call resumed on a new connection")
        return answer

    # --- lifecycle ---------------------------------------------------------------------------

    def notify(self, event: Event) -> None:
        """Tell the browser something outside the conversation (e.g. the gateway is draining)."""
        self._send_client(event)

    def end(self, reason: str, error: Event | None = None) -> None:
        """Ask the call to hang up (idempotent); ``error`` is told to the client first."""
        if self._ended.is_set():
            return
        self.end_reason = reason
        self._end_error = error
        self._ended.set()

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    async def run(self) -> CallSummary:
        """Supervise the call until it ends, then free everything it holds."""
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._run_upstream(), name=f"{self.id}-upstream")
                tg.create_task(self._serve_peers(), name=f"{self.id}-peers")
                if self._config.max_call_duration_s > 0:
                    tg.create_task(self._end_at_max_duration(), name=f"{self.id}-max-duration")
                await self._ended.wait()
                raise _HangUp
        except* _HangUp:
            pass
        except* Exception as group:
            for exc in group.exceptions:
                logger.error("call task failed", exc_info=exc)
            self.end("internal_error", error_event("The gateway hit an internal error and ended the call.",
                                                   code="internal_error", type_="server_error"))
        finally:
            await self._teardown()
        return self._summary()

    async def _end_at_max_duration(self) -> None:
        """``MAX_CALL_DURATION``: the call ends, and the browser is told why (an ``error``
        ``call_duration_exceeded`` on the data channel just before the hang-up)."""
        limit = self._config.max_call_duration_s
        await asyncio.sleep(max(0.0, self._started + limit - time.monotonic()))
        logger.info("call reached MAX_CALL_DURATION (%.0f s)", limit)
        self.end("call_duration_exceeded", error_event(
            f"This call reached the gateway's maximum duration of {limit:g} s and was ended.",
            code="call_duration_exceeded"))

    async def _serve_peers(self) -> None:
        self.end(await self._peers.serve(self._peer_lost))

    def _peer_lost(self) -> None:
        """The browser vanished and the call waits for it to resume."""
        self.conversation.peer_lost(time.monotonic())
        self._flush()

    async def _teardown(self) -> None:
        lingering = await self._peers.close(self._end_error)
        if lingering is not None:
            self.lingering_close = lingering

    def _summary(self) -> CallSummary:
        stats = self.conversation.stats
        latencies = [s * 1000 for s in stats.latencies_s]
        turn_latency = dict(zip(("p50", "p90", "max"), percentiles(latencies, 0.5, 0.9, 1.0), strict=False))
        mic_frames = dict(self._mic_frames)
        receive = self._peer.receive_stats()
        if receive:
            mic_frames["sent_by_peer"] = receive["sent_by_peer"]
        return CallSummary(
            reason=self.end_reason or "unknown",
            duration_s=time.monotonic() - self._started,
            upstream_connect_ms=None if self._link.first_connect_s is None else self._link.first_connect_s * 1000,
            session_ready_ms=self._session_ready_ms,
            turns=stats.turns,
            interruptions=stats.interruptions,
            audio_in_s=self._audio_in_samples / UPSTREAM_RATE,
            audio_out_s=self._frames_out * 0.02,
            turn_latency_ms=turn_latency,
            mic_frames=mic_frames,
            dropped_frames=self._state.dropped_frames + self._link.dropped_audio,
            reply_dropped_s=self.conversation.audio_dropped_s,
            refused_events=self._link.refused_events,
            jitter_buffer_ms=receive.get("jitter_buffer_ms", {}),
        )

    # --- upstream ----------------------------------------------------------------------------

    async def _run_upstream(self) -> None:
        try:
            await self._link.run()
        except LinkFailed as failure:
            logger.error("upstream gave up: %s", failure.error["error"]["message"])
            self.end(failure.reason, failure.error)

    def _on_upstream_event(self, event: Event) -> None:
        if event["type"] == "error":
            self._metrics.upstream_error(str((event.get("error") or {}).get("code")))
        idle = not self.conversation.audio_queued
        self.conversation.receive_upstream(event, time.monotonic())
        if idle and self.conversation.audio_queued:
            self._peer.outbound.wake()  # the reply's first frame goes out now, not at the next tick
        if self._session_ready_ms is None and self.conversation.state is State.READY:
            self._session_ready_ms = (time.monotonic() - self._started) * 1000
            logger.info("[perf] session configured in %.0f ms", self._session_ready_ms)
        self._flush()

    # --- media -------------------------------------------------------------------------------

    def _on_mic_audio(self, pcm: bytes, frame: MicFrame) -> None:
        if not self._state.mic_frame(self._link.queued_audio):
            self._metrics.mic_frames_dropped.inc()
            return  # the upstream is not keeping up (or is reconnecting): memory stays bounded
        # Gateway-added latency counts from an RTP packet's arrival: frames made here (concealment
        # during a stall) have no packet to count from.
        self._link.send(append_message(pcm), audio=True,
                        received_at=frame.received_at if frame.origin == "decoded" else None)
        self._metrics.mic_frames(frame.origin)
        self._mic_frames[frame.origin] += 1
        samples = len(pcm) // 2
        self._audio_in_samples += samples
        self.conversation.input_audio_sent(samples, time.monotonic())

    def _next_frame(self, now: float) -> Any:
        pcm = self.conversation.next_frame(now)
        self._frames_out += 1
        self._flush()
        return pcm

    # --- data channel ------------------------------------------------------------------------

    def _on_client_message(self, message: str | bytes) -> None:
        now = time.monotonic()
        accepted, error = self._state.client_message(len(message), now)
        if error is not None:
            self._send_client(error)
        if not accepted:
            return
        self.conversation.receive_client(message, now)
        self._flush()

    def _send_client(self, event: Event) -> None:
        for observer in self._observers:
            shown = observer(event)
            if shown is None:
                return
            event = shown
        if self._state.to_client(event):
            self._peer.send(event)

    # --- the application's side (sideband connections) ---------------------------------------

    def add_observer(self, observer: Observer) -> Callable[[], None]:
        """Show ``observer`` every server event meant for the browser, in order, as it is sent;
        it returns what the browser gets instead (``None``: nothing). Returns its remover."""
        self._observers.append(observer)
        return lambda: self._observers.remove(observer) if observer in self._observers else None

    def receive_trusted(self, event: Event) -> None:
        """A client event from the application's own backend: handled like the browser's, but
        only the gateway's own limits apply (audio formats), not ``LOCKED_SESSION_FIELDS``."""
        self.conversation.receive_trusted(event, time.monotonic())
        self._flush()

    async def wait_ended(self) -> Event | None:
        """Until the call is over; the ``error`` it ended with, if it ended with one."""
        await self._ended.wait()
        return self._end_error

    def _flush(self) -> None:
        conversation = self.conversation
        self._metrics.observe(conversation.drain_measurements())
        for event in conversation.data_to_upstream():
            self._link.send(dumps(event))
        for event in conversation.data_to_client():
            self._send_client(event)
        if conversation.fatal_error is not None and not self.ended:
            error = conversation.fatal_error
            logger.error("fatal upstream error: %s", error)
            self.end(str(error.get("code") or "upstream_error"))
