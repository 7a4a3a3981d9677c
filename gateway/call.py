"""One call: a browser's peer connection bound to one upstream Realtime session.

The call owns everything it starts. :meth:`Call.accept` answers the SDP offer; :meth:`Call.run`
(owned by the registry) supervises the call's tasks in one TaskGroup — upstream reader, upstream
writer, mic pump, ICE watchdog — and tears everything down when any of them ends the call, when
the peer disappears, or when :meth:`Call.end` is called (DELETE, shutdown). Decisions belong to
the sans-I/O :class:`~gateway.conversation.Conversation`; this module only moves data.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.sdp import candidate_from_sdp
from aiortc.rtcrtpsender import RTCRtpSender

from .config import Config
from .conversation import Conversation, State
from .errors import BadRequest
from .events import Event, append_message, dumps, error_event
from .limits import TokenBucket
from .metrics import GatewayMetrics
from .audio_receiver import RtpMicSource
from .inbound_audio import MicFrame, MicSource, TrackMicSource, pump_mic
from .opus_sdp import request_opus_fec
from .outbound_codec import OpusPacketizer, follow_loss_reports
from .outbound_audio import OutboundAudioTrack
from .policy import SessionPolicy
from .upstream_link import LinkFailed, UpstreamLink

logger = logging.getLogger(__name__)

DATA_CHANNEL_LABEL = "oai-events"
MAX_BACKLOG_AUDIO = 250  # 5 s of 20 ms appends held while the upstream connects
MAX_CLIENT_BACKLOG = 500  # events held until the data channel opens
CHANNEL_WAIT_ON_ERROR_S = 5.0
CLOSE_WAIT_S = 2.0
MAX_CLIENT_MESSAGE = 64 * 1024  # SCTP itself allows 256 KiB; no Realtime event needs that
CLIENT_EVENTS_PER_S, CLIENT_EVENT_BURST = 50, 200


class _HangUp(Exception):
    """Raised inside the call's TaskGroup to cancel every task of the call."""


@dataclass
class CallSummary:
    """What one log line per call reports at hang-up."""

    reason: str
    duration_s: float
    upstream_connect_ms: float | None
    session_ready_ms: float | None
    turns: int
    interruptions: int
    audio_in_s: float
    audio_out_s: float
    turn_latency_ms: dict[str, float] = field(default_factory=dict)  # p50 / p90 / max
    mic_frames: dict[str, int] = field(default_factory=dict)  # by origin: decoded / fec / concealed
    jitter_buffer_ms: dict[str, float] = field(default_factory=dict)  # p50 / p95 of held-back delay

    def log_line(self) -> str:
        def fmt(values: dict[str, float]) -> str:
            return "/".join(f"{v:.0f}" for v in values.values()) or "-"

        return (f"call ended: reason={self.reason} duration={self.duration_s:.1f}s turns={self.turns} "
                f"interruptions={self.interruptions} audio_in={self.audio_in_s:.1f}s "
                f"audio_out={self.audio_out_s:.1f}s turn_latency_ms(p50/p90/max)={fmt(self.turn_latency_ms)} "
                f"mic_frames={self.mic_frames or '-'} jitter_buffer_ms(p50/p95)={fmt(self.jitter_buffer_ms)} "
                f"upstream_connect_ms={_ms(self.upstream_connect_ms)} session_ready_ms={_ms(self.session_ready_ms)}")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _percentiles(values: list[float], *quantiles: float) -> list[float]:
    ordered = sorted(values)
    return [ordered[min(len(ordered) - 1, int(q * len(ordered)))] for q in quantiles] if ordered else []


async def close_peer(pc: RTCPeerConnection) -> None:
    """Close a peer connection whatever state a bad offer left it in (aiortc can trip over it)."""
    try:
        await pc.close()
    except Exception:
        logger.debug("aiortc failed while closing a peer connection", exc_info=True)


class Call:
    def __init__(self, call_id: str, config: Config, session: Mapping[str, Any], *,
                 peer_configuration: RTCConfiguration | None = None,
                 mic_source: Callable[[MediaStreamTrack, Any], MicSource] | None = None,
                 metrics: GatewayMetrics | None = None, created_at: float | None = None) -> None:
        self.id = call_id
        self._config = config
        self._metrics = metrics or GatewayMetrics()
        self.conversation = Conversation(session, SessionPolicy.from_fields(config.locked_session_fields),
                                         playout_delay_ms=config.playout_delay_ms)
        self.pc = RTCPeerConnection(peer_configuration or RTCConfiguration())
        self._packetizer = OpusPacketizer()
        self.outbound = OutboundAudioTrack(self._next_frame, packetize=self._packetizer)
        self._make_mic_source = mic_source or (
            RtpMicSource.attach if config.receive_path == "gateway" else TrackMicSource)
        self._mic: MicSource | None = None
        self._sender: RTCRtpSender | None = None
        self._audio_mid: str | None = None
        self._remote_track: tuple[MediaStreamTrack, Any] | None = None
        self._channel: RTCDataChannel | None = None
        self._client_backlog: list[str] = []
        self._link = UpstreamLink(config, self.conversation, self._metrics, self._on_upstream_event, self._flush)
        self._tg: asyncio.TaskGroup | None = None
        self._ended = asyncio.Event()
        self._connected = asyncio.Event()
        self._channel_open = asyncio.Event()
        self.end_reason: str | None = None
        self.lingering_close: asyncio.Future[None] | None = None  # a close that outlived the call
        self._end_error: Event | None = None
        self._started = created_at if created_at is not None else time.monotonic()
        self._session_ready_ms: float | None = None
        self._audio_in_samples = 0
        self._frames_out = 0
        self.dropped_audio = 0
        self._turns_reported = 0
        self._client_rate = TokenBucket(CLIENT_EVENTS_PER_S, CLIENT_EVENT_BURST)
        self._client_rate_warned = 0.0
        self._mic_frames: collections.Counter[str] = collections.Counter()
        self._last_heard = time.monotonic()

    # --- signaling ---------------------------------------------------------------------------

    async def accept(self, offer_sdp: str) -> str:
        """Apply the browser's offer and return our answer, candidates included (no trickle)."""
        self.pc.on("track", self._on_track)
        self.pc.on("datachannel", self._on_datachannel)
        self.pc.on("connectionstatechange", self._on_connection_state)
        transceiver = self.pc.addTransceiver(self.outbound, direction="sendrecv")
        transceiver.setCodecPreferences(
            [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType.lower() == "audio/opus"])
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            if transceiver.mid is None:
                raise BadRequest("The SDP offer has no audio section using Opus.", code="invalid_offer")
            for other in self.pc.getTransceivers():
                if other is not transceiver:
                    other.direction = "inactive"  # one audio stream per call; extra media is refused
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        except BadRequest:
            raise
        except Exception as exc:  # aiortc raises ValueError, KeyError, AttributeError… on odd offers
            raise BadRequest(f"The SDP offer could not be negotiated: {exc or type(exc).__name__}",
                             code="invalid_offer") from None
        self._sender = transceiver.sender
        self._audio_mid = transceiver.mid
        return request_opus_fec(self.pc.localDescription.sdp)

    async def add_remote_candidates(self, candidates: list[tuple[str | None, str]]) -> None:
        """Candidates the browser trickled after its offer (``PATCH``)."""
        for mid, line in candidates:
            try:
                candidate = candidate_from_sdp(line.split(":", 1)[1])
            except (ValueError, IndexError):
                raise BadRequest(f"Malformed candidate: {line[:80]!r}", code="invalid_sdpfrag") from None
            candidate.sdpMid = mid or self._audio_mid
            try:
                await self.pc.addIceCandidate(candidate)
            except (ValueError, KeyError) as exc:
                raise BadRequest(f"The candidate could not be added: {exc}", code="invalid_sdpfrag") from None

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind != "audio" or self._remote_track is not None:
            return
        receiver = next((t.receiver for t in self.pc.getTransceivers() if t.receiver.track is track), None)
        self._remote_track = (track, receiver)
        if self._tg is not None:
            self._tg.create_task(self._run_mic(), name=f"{self.id}-mic")

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if channel.label != DATA_CHANNEL_LABEL or self._channel is not None:
            return
        self._channel = channel
        self._channel_open.set()
        channel.on("message", self._on_client_message)
        backlog, self._client_backlog = self._client_backlog, []
        for message in backlog:
            channel.send(message)

    def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected":
            if not self._connected.is_set():
                self._metrics.call_setup.observe(time.monotonic() - self._started)
            self._connected.set()
        elif state == "failed":
            self.end("ice_failed")
        elif state == "closed":
            self.end("peer_closed")

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
                self._tg = tg
                tg.create_task(self._run_upstream(), name=f"{self.id}-upstream")
                tg.create_task(self._watch_peer(), name=f"{self.id}-peer")
                assert self._sender is not None, "run() follows accept()"
                tg.create_task(follow_loss_reports(self._sender, self._packetizer.encoder), name=f"{self.id}-loss")
                if self._remote_track is not None:
                    tg.create_task(self._run_mic(), name=f"{self.id}-mic")
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
            self._tg = None
            await self._teardown()
        return self._summary()

    async def _teardown(self) -> None:
        if self._end_error is not None:
            # A call that fails while still connecting waits briefly for its data channel,
            # so the browser learns why instead of seeing a silent hang-up.
            if self.pc.connectionState not in ("closed", "failed"):
                try:
                    await asyncio.wait_for(self._channel_open.wait(), CHANNEL_WAIT_ON_ERROR_S)
                except asyncio.TimeoutError:
                    pass
            self._send_client(self._end_error)
            await self._drain_channel(timeout=0.3)
        # Closing can take a minute when a TURN server stopped answering (aioice retries the
        # allocation's deletion): past a short wait the registry takes over the closing task.
        closing = asyncio.ensure_future(close_peer(self.pc))
        done, _ = await asyncio.wait({closing}, timeout=CLOSE_WAIT_S)
        if not done:
            logger.warning("peer connection still closing after %.0f s (TURN server gone?); finishing in "
                           "the background", CLOSE_WAIT_S)
            self.lingering_close = closing

    async def _drain_channel(self, timeout: float) -> None:
        channel = self._channel
        deadline = time.monotonic() + timeout
        while channel is not None and channel.readyState == "open" and channel.bufferedAmount \
                and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    def _summary(self) -> CallSummary:
        stats = self.conversation.stats
        latencies = [s * 1000 for s in stats.latencies_s]
        turn_latency = dict(zip(("p50", "p90", "max"), _percentiles(latencies, 0.5, 0.9, 1.0)))
        mic_frames = dict(self._mic_frames)
        jitter: dict[str, float] = {}
        if self._mic is not None:
            receive = self._mic.receive_stats()
            jitter = receive["jitter_buffer_ms"]
            mic_frames["sent_by_peer"] = receive["sent_by_peer"]
        return CallSummary(
            reason=self.end_reason or "unknown",
            duration_s=time.monotonic() - self._started,
            upstream_connect_ms=None if self._link.first_connect_s is None else self._link.first_connect_s * 1000,
            session_ready_ms=self._session_ready_ms,
            turns=stats.turns,
            interruptions=stats.interruptions,
            audio_in_s=self._audio_in_samples / 24000,
            audio_out_s=self._frames_out * 0.02,
            turn_latency_ms=turn_latency,
            mic_frames=mic_frames,
            jitter_buffer_ms=jitter,
        )

    async def _watch_peer(self) -> None:
        """ICE must connect in time, and then the browser's mic must keep flowing.

        Browsers send mic RTP all the time (a muted track still sends packets), so silence on the
        wire for ``peer_timeout_s`` means the peer vanished: closed tab, lost network. aiortc's
        own consent checks would take ~30 s to notice.
        """
        config = self._config
        try:
            await asyncio.wait_for(self._connected.wait(), config.ice_connect_timeout_s)
        except asyncio.TimeoutError:
            logger.warning("ICE did not connect within %.0f s: the browser could not reach any gateway "
                           "candidate (firewall/NAT without TURN? expired TURN credentials?)",
                           config.ice_connect_timeout_s)
            self.end("ice_timeout")
            return
        self._last_heard = time.monotonic()
        while True:
            await asyncio.sleep(min(0.5, config.peer_timeout_s / 4))
            silent = time.monotonic() - self._last_heard
            if silent > config.peer_timeout_s:
                logger.warning("no media from the browser for %.1f s: the peer is gone", silent)
                self.end("peer_gone")
                return

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
        self.conversation.receive_upstream(event, time.monotonic())
        if self._session_ready_ms is None and self.conversation.state is State.READY:
            self._session_ready_ms = (time.monotonic() - self._started) * 1000
            logger.info("[perf] session configured in %.0f ms", self._session_ready_ms)
        self._flush()

    # --- media -------------------------------------------------------------------------------

    async def _run_mic(self) -> None:
        assert self._remote_track is not None
        track, receiver = self._remote_track
        source = self._mic = self._make_mic_source(track, receiver)
        try:
            await pump_mic(source, self._on_mic_audio)
        except MediaStreamError:
            self.end("peer_closed")
        finally:
            source.stop()

    def _on_mic_audio(self, pcm: bytes, frame: MicFrame) -> None:
        if frame.origin != "concealed":
            self._last_heard = frame.received_at
        if self._link.queued_audio >= MAX_BACKLOG_AUDIO:
            self.dropped_audio += 1  # the upstream is not keeping up (or reconnecting): bounded memory
            return
        self._link.send(append_message(pcm), frame.received_at)
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
        if len(message) > MAX_CLIENT_MESSAGE:
            self._send_client(error_event(f"Events are limited to {MAX_CLIENT_MESSAGE // 1024} KiB.",
                                          code="message_too_large"))
            return
        if not self._client_rate.take():
            if self._client_rate_warned + 1.0 < time.monotonic():  # one warning a second, not one per event
                self._client_rate_warned = time.monotonic()
                self._send_client(error_event("Too many events on the data channel; some were dropped.",
                                              code="rate_limited"))
            return
        self.conversation.receive_client(message)
        self._flush()

    def _send_client(self, event: Event) -> None:
        message = dumps(event)
        channel = self._channel
        if channel is not None and channel.readyState == "open":
            channel.send(message)
        elif len(self._client_backlog) < MAX_CLIENT_BACKLOG:
            self._client_backlog.append(message)

    def _flush(self) -> None:
        conversation = self.conversation
        for latency in conversation.outbound_latencies():
            self._metrics.outbound_latency.observe(latency)
        latencies = conversation.stats.latencies_s
        while self._turns_reported < len(latencies):
            self._metrics.turn_latency.observe(latencies[self._turns_reported])
            self._turns_reported += 1
        for event in conversation.data_to_upstream():
            self._link.send(dumps(event))
        for event in conversation.data_to_client():
            self._send_client(event)
        if conversation.fatal_error is not None and not self.ended:
            error = conversation.fatal_error
            logger.error("fatal upstream error: %s", error)
            self.end(str(error.get("code") or "upstream_error"))
