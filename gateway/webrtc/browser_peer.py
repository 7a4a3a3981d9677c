"""One WebRTC connection to a browser: its mic in, the assistant's voice out, the events channel.

A call has one peer at a time, and may get a new one when the browser's network changes
(see ``Call.resume``). The peer owns what dies with the connection: the peer connection, the
outbound track, the mic pump, the loss-report follower and the liveness watch, all run by
:meth:`BrowserPeer.run` in one TaskGroup and cancelled together when it returns.

With ``MEDIA_PATH=native`` the connection's RTP leaves aiortc once it is connected
(:class:`~gateway.media.native.call_media.NativeCallMedia`): the outbound track is held until
then, handed to the worker's pacer if the native path takes the call, released to aiortc's sender
if not (a TURN relay pair, say). The native side is stopped when :meth:`BrowserPeer.run` returns.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.sdp import candidate_from_sdp

from ..config import Config
from ..core.errors import BadRequest
from ..core.events import Event, dumps
from ..media.audio_receiver import MicLimits, RtpMicSource
from ..media.inbound_audio import MicFrame, MicSource, TrackMicSource, pump_mic
from ..media.nack import NackPolicy
from ..media.native import announce_config
from ..media.native.call_media import NativeCallMedia
from ..media.native.nack_resend import bound_aiortc_resends
from ..media.native.shared_media import SharedMedia
from ..media.outbound_audio import OutboundAudioTrack
from ..media.outbound_codec import OpusPacketizer, follow_loss_reports
from ..server.metrics import GatewayMetrics
from .ice import explain_ice_failure, selected_route
from .nack_sdp import accept_nack
from .opus_sdp import request_opus_fec
from .red_audio import RedPacketizer, accept_red
from .sdp import tidy_answer
from .transport_timers import TransportTimers, prefer_dtls_server, tune_transport_timers

logger = logging.getLogger(__name__)

DATA_CHANNEL_LABEL = "oai-events"
MAX_BACKLOG = 500  # events held until the data channel opens
CLOSE_WAIT_S = 2.0
NATIVE_START_WAIT_S = 5.0  # connected → aiortc's sender started (it configures the header extensions)

MicFactory = Callable[[MediaStreamTrack, Any], MicSource]


async def close_peer(pc: RTCPeerConnection) -> None:
    """Close a peer connection whatever state a bad offer left it in (aiortc can trip over it)."""
    try:
        await pc.close()
    except Exception:
        logger.debug("aiortc failed while closing a peer connection", exc_info=True)


class BrowserPeer:
    def __init__(self, config: Config, configuration: RTCConfiguration | None, *,
                 next_frame: Callable[[float], np.ndarray], on_mic_audio: Callable[[bytes, MicFrame], None],
                 on_message: Callable[[str | bytes], None], metrics: GatewayMetrics, started: float,
                 mic_source: MicFactory | None = None, pc: RTCPeerConnection | None = None,
                 native_media: SharedMedia | None = None) -> None:
        """``pc``: a peer connection made elsewhere (the embedding API's, owned by the application).
        ``native_media``: the worker's pacer and call heap for the native path (None: the call's own)."""
        self._config = config
        self._metrics = metrics
        self._native_media = native_media
        self._started = started
        self._on_mic_audio = on_mic_audio
        self._on_message = on_message
        self.configuration = configuration or RTCConfiguration()
        self.pc = pc if pc is not None else RTCPeerConnection(self.configuration)
        self._packetizer = OpusPacketizer()
        self._red = RedPacketizer(self._packetizer)  # plain Opus unless the browser offers RED
        self.outbound = OutboundAudioTrack(next_frame, packetize=self._red, on_gap=metrics.outbound_gap)
        self.media_path = announce_config(config)
        self.native: NativeCallMedia | None = None
        if self.media_path == "native":
            self.outbound.hold()  # the first frame waits for the path chosen at connection
        self._make_mic = mic_source or (self._own_mic if config.receive_path == "gateway" else TrackMicSource)
        self.mic: MicSource | None = None
        self._mic_ready = asyncio.Event()  # self.mic is made
        self._sender: RTCRtpSender | None = None
        self._audio_mid: str | None = None
        self._nack = False  # the mic's sender offered NACK and it was answered
        self._remote_track: tuple[MediaStreamTrack, Any] | None = None
        self._track_ready = asyncio.Event()
        self.channel: RTCDataChannel | None = None
        self._backlog: collections.deque[str] = collections.deque(maxlen=MAX_BACKLOG)
        self._connected = asyncio.Event()
        self.channel_open = asyncio.Event()
        self._gone = asyncio.Event()
        self.gone_reason = ""
        self.connected_once = False
        self.last_heard = time.monotonic()
        self.lingering_close: asyncio.Future[None] | None = None

    # --- negotiation -----------------------------------------------------------------------

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
            own_path = self._config.receive_path == "gateway"
            red = accept_red(transceiver, offer_sdp) if own_path and self._config.red else None
            self._nack = own_path and self._config.mic_nack and accept_nack(
                transceiver, offer_sdp, unoffered=self._config.mic_nack_browsers)
            if red is not None:  # RED both ways (the own receive path unpacks it)
                self._red.enable(red)
            timers = TransportTimers.from_config(self._config)
            prefer_dtls_server(self.pc, timers)
            await self.pc.setLocalDescription(await self.pc.createAnswer())
            if timers is not None:
                tune_transport_timers(self.pc, timers)
        except BadRequest:
            raise
        except Exception as exc:  # aiortc raises ValueError, KeyError, AttributeError… on odd offers
            raise BadRequest(f"The SDP offer could not be negotiated: {exc or type(exc).__name__}",
                             code="invalid_offer") from None
        self._sender = transceiver.sender
        bound_aiortc_resends(self._sender)  # a peer NACKing everything must not multiply what we send
        self._audio_mid = transceiver.mid
        return tidy_answer(request_opus_fec(self.pc.localDescription.sdp))

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
        if track.kind == "audio" and self._remote_track is None:
            receiver = next((t.receiver for t in self.pc.getTransceivers() if t.receiver.track is track), None)
            self._remote_track = (track, receiver)
            self._track_ready.set()

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if channel.label != DATA_CHANNEL_LABEL or self.channel is not None:
            return
        self.channel = channel
        self.channel_open.set()
        channel.on("message", self._on_message)
        while self._backlog:
            channel.send(self._backlog.popleft())

    def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected":
            if not self._connected.is_set():
                self._metrics.call_setup.observe(time.monotonic() - self._started)
                logger.info("ICE connected via %s (gateway/browser candidate types)", selected_route(self.pc))
            self.connected_once = True
            self._connected.set()
        elif state == "failed":
            if not self._connected.is_set():
                logger.warning("ICE failed: %s", explain_ice_failure(self.pc, self._config))
            self.stop("ice_failed")
        elif state == "closed":
            self.stop("peer_closed")

    # --- life --------------------------------------------------------------------------------

    def stop(self, reason: str) -> None:
        """The connection is over (idempotent): :meth:`run` returns ``reason``."""
        if not self._gone.is_set():
            self.gone_reason = reason
            self._gone.set()

    async def run(self) -> str:
        """Serve the browser until it is gone; returns why (``peer_gone``, ``ice_timeout``…)."""
        assert self._sender is not None, "run() follows accept()"
        async with asyncio.TaskGroup() as tasks:
            watch = tasks.create_task(self._watch())
            loss = tasks.create_task(follow_loss_reports(self._sender, self._packetizer.encoder,
                                                         on_report=self._red.follow))
            mic = tasks.create_task(self._run_mic())
            native = tasks.create_task(self._run_native())
            try:
                await self._gone.wait()
            finally:
                for task in (watch, loss, mic, native):
                    task.cancel()
                if self.native is not None:
                    self.native.stop()
        return self.gone_reason

    async def _run_native(self) -> None:
        """Once connected, the call's RTP moves to the native path (MEDIA_PATH=native), or the
        outbound track goes to aiortc's sender after all."""
        if self.media_path != "native":
            return
        try:
            await self._connected.wait()
            assert self._sender is not None
            await asyncio.wait_for(self._sender._RTCRtpSender__rtp_started.wait(),  # type: ignore[attr-defined]
                                   NATIVE_START_WAIT_S)
            if self._remote_track is not None:
                await self._mic_ready.wait()  # _run_mic makes the mic source in its first step
            transceiver = next(t for t in self.pc.getTransceivers() if t.sender is self._sender)
            shared = self._native_media
            native = NativeCallMedia(transceiver, self.outbound, pacer=shared.pacer if shared else None,
                                     heap=shared.heap if shared else None)
            why = native.start(self.mic if isinstance(self.mic, RtpMicSource) else None)
        except Exception as exc:  # anything unexpected: the call goes on on the Python path
            logger.warning("native media path not started (%r): Python path for this call", exc)
            self.outbound.release()
            return
        if why is not None:
            logger.info("native media path not used for this call (%s): Python path", why)
            self.outbound.release()
            return
        self.native = native

    async def _watch(self) -> None:
        """ICE must connect in time, and then the browser's mic must keep flowing.

        Browsers send mic RTP all the time (a muted track still sends packets), so silence on the
        wire for ``peer_timeout_s`` means the peer vanished: closed tab, lost network. aiortc's
        own consent checks would take ~30 s to notice. Concealment the receive path makes for a
        silent mic does not count as heard (and stops after ``mic_silence_stop_s``, so a silent
        browser costs no upstream audio while this watch decides).
        """
        config = self._config
        try:
            await asyncio.wait_for(self._connected.wait(), config.ice_connect_timeout_s)
        except TimeoutError:
            logger.warning("ICE did not connect within %.0f s: %s", config.ice_connect_timeout_s,
                           explain_ice_failure(self.pc, config))
            self.stop("ice_timeout")
            return
        self.last_heard = time.monotonic()
        while True:
            await asyncio.sleep(min(0.25, config.peer_timeout_s / 4))
            silent = time.monotonic() - self.last_heard
            if silent > config.peer_timeout_s:
                logger.warning("no media from the browser for %.1f s: the peer is gone", silent)
                self.stop("peer_gone")
                return

    def _own_mic(self, track: MediaStreamTrack, receiver: Any) -> MicSource:
        config = self._config
        limits = MicLimits(burst_s=config.mic_burst_ms / 1000, silence_stop_s=config.mic_silence_stop_s,
                           max_ssrc_changes=config.mic_max_ssrc_changes)
        nack = NackPolicy(max_wait=config.mic_nack_max_wait_ms / 1000) if self._nack else None
        return RtpMicSource.attach(track, receiver, limits=limits, nack=nack)

    async def _run_mic(self) -> None:
        await self._track_ready.wait()
        assert self._remote_track is not None
        track, receiver = self._remote_track
        source = self.mic = self._make_mic(track, receiver)
        self._mic_ready.set()
        try:
            await pump_mic(source, self._heard)
        except MediaStreamError:
            self.stop("peer_closed")
        finally:
            source.stop()

    def _heard(self, pcm: bytes, frame: MicFrame) -> None:
        if frame.origin != "concealed":
            self.last_heard = frame.received_at
        self._on_mic_audio(pcm, frame)

    # --- events to the browser ---------------------------------------------------------------

    def send(self, event: Event) -> None:
        message = dumps(event)
        channel = self.channel
        if channel is not None and channel.readyState == "open":
            channel.send(message)
        else:
            self._backlog.append(message)

    async def say_goodbye(self, event: Event) -> None:
        """Deliver a last event: waits (bounded) for a channel that is still opening, and for it
        to drain, so the browser learns why instead of seeing a silent hang-up."""
        if self.pc.connectionState not in ("closed", "failed"):
            try:
                await asyncio.wait_for(self.channel_open.wait(), 5.0)
            except TimeoutError:
                pass
        self.send(event)
        deadline = time.monotonic() + 0.3
        while self.channel is not None and self.channel.readyState == "open" and self.channel.bufferedAmount \
                and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        """Closing can take a minute when a TURN server stopped answering (aioice retries the
        allocation's deletion): past a short wait the closing goes on in ``lingering_close``."""
        self.stop("closed")
        closing = asyncio.ensure_future(close_peer(self.pc))
        done, _ = await asyncio.wait({closing}, timeout=CLOSE_WAIT_S)
        if not done:
            logger.warning("peer connection still closing after %.0f s (TURN server gone?); finishing in "
                           "the background", CLOSE_WAIT_S)
            self.lingering_close = closing

    def receive_stats(self) -> dict[str, Any]:
        return self.mic.receive_stats() if self.mic is not None else {}
