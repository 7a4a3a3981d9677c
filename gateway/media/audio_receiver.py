"""The gateway's own audio receive path: RTP → jitter buffer → Opus (FEC/PLC) → mic frames.

aiortc's audio path adds a fixed 80 ms, stalls after a loss until 16 newer packets pile up,
never conceals, never uses FEC, and decodes in a thread per receiver. :class:`RtpMicSource`
takes the receiver's RTP packets instead (see :func:`~gateway.media.rtp_tap.tap`), keeps aiortc's per-SSRC statistics
so its RTCP receiver reports to the browser stay right (the browser tunes its FEC from them),
retires aiortc's decoder thread, and decodes in the event loop (~40 µs a frame) straight to the
24 kHz the upstream takes (libopus decodes at any of its rates: no resampler, 17 µs and 0.65 ms
of filter delay less per frame than decoding at 48 kHz): a packet that arrives in order is a
20 ms mic frame at once; a missing one is rebuilt from FEC or concealed
on time (:mod:`gateway.media.jitter_buffer`), so the upstream hears a continuous cadence.

What a browser's mic may cost is bounded (:class:`MicLimits`), because the upstream bills the
audio it receives and the numbering in RTP headers is the browser's to choose: never more audio
than wall-clock time plus ``burst_s`` (:class:`~gateway.media.audio_budget.AudioBudget`, spent
by the jitter buffer: lying sequence numbers or timestamps, floods, 120 ms packets that claim
20 ms), nothing after ``silence_stop_s`` without packets, one stream at a time and at most
``max_ssrc_changes`` new ones, no more than 200 packets a second — the last two checked on the
SRTP header before decryption (:class:`~gateway.media.rtp.RtpGate`), so a churning or flooding
sender cannot make aiortc or libsrtp keep state per SSRC either.

The packets come through :mod:`gateway.media.rtp_tap`, which relies on aiortc 1.16 internals
and checks them (:func:`~gateway.media.rtp_tap.check_aiortc_internals`) before a call uses them;
the figures it reports are :class:`~gateway.media.receive_stats.ReceiveStats`.

With ``MEDIA_PATH=native`` the packets come from :mod:`gateway.media.native` instead
(:meth:`RtpMicSource.push_native`, a batch at a time), gated by the same :class:`RtpGate` before
decryption, decrypted and parsed in C; from the jitter buffer on, the path is the same.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from aiortc import clock as aiortc_clock
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpreceiver import RTCRtpReceiver, StreamStatistics
from aiortc.rtp import RtpPacket

from ..core.audio_format import UPSTREAM_FRAME, UPSTREAM_RATE, WEBRTC_RATE
from . import red
from .audio_budget import AudioBudget
from .inbound_audio import MicFrame
from .jitter_buffer import JitterBuffer, Origin, Release
from .nack import NackPolicy
from .nack_rtcp import NackChannel
from .opus import OpusDecoder, OpusError, has_inband_fec, packet_samples
from .receive_stats import ReceiveStats
from .rtp import RtpGate
from .rtp_tap import ReceivePathError, check_aiortc_internals, check_receiver, tap

__all__ = ["MicLimits", "ReceivePathError", "ReceiveStats", "RtpMicSource", "check_aiortc_internals",
           "decode_release"]

logger = logging.getLogger(__name__)

MAX_QUEUED_FRAMES = 250  # 5 s: a consumer that stops reading must not grow memory without bound
_PER_48K = WEBRTC_RATE // UPSTREAM_RATE  # decoded straight to the upstream's rate; the jitter buffer counts 48 kHz samples


@dataclass(frozen=True)
class MicLimits:
    """What one browser connection's mic may cost (settings ``MIC_BURST_MS``,
    ``MIC_SILENCE_STOP``, ``MIC_MAX_SSRC_CHANGES``)."""

    burst_s: float = 0.2  # mic audio the upstream may receive ahead of the wall clock
    silence_stop_s: float = 2.0  # after this long without mic packets, no more concealment is sent
    max_ssrc_changes: int = 4  # new SSRCs followed; later ones are ignored


class RtpMicSource:
    """A :class:`~gateway.media.inbound_audio.MicSource` fed straight from a receiver's RTP packets."""

    def __init__(self, receiver: RTCRtpReceiver, *, clock: Callable[[], float] = time.monotonic,
                 buffer: JitterBuffer | None = None, limits: MicLimits | None = None,
                 nack: NackPolicy | None = None) -> None:
        check_aiortc_internals()
        check_receiver(receiver)
        if receiver._RTCRtpReceiver__kind != "audio":  # type: ignore[attr-defined]
            raise ValueError("RtpMicSource needs an audio receiver")
        limits = limits or MicLimits()
        self._clock = clock
        self._loop = asyncio.get_running_loop()
        self.buffer = buffer or JitterBuffer(budget=AudioBudget(limits.burst_s), max_stall_s=limits.silence_stop_s,
                                             duration=packet_samples, nack=nack, fec=has_inband_fec)
        self._nack = NackChannel(receiver) if nack is not None else None  # the sender resends: ask it
        self._gate = RtpGate(limits.max_ssrc_changes)
        self._warned: set[str] = set()
        self._decoder = OpusDecoder(UPSTREAM_RATE)
        self._frames: collections.deque[MicFrame] = collections.deque(maxlen=MAX_QUEUED_FRAMES)
        self._partial: tuple[np.ndarray, float, Origin] | None = None  # <20 ms left from a packet
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_deadline: float | None = None
        self._ssrc: int | None = None
        self._ended = False
        self._fec_packets = 0
        self._decode_errors = 0
        self._dropped = 0
        self._red_packets = 0
        self._native: _NativeView | None = None
        self._sink: Callable[[MicFrame], None] | None = None  # push mode: see deliver()
        self._sink_error: Exception | None = None
        self._receiver = receiver
        tap(receiver, self._on_packet, self._on_receiver_stopped, permits=self._permits, follows=self._follows)

    @classmethod
    def attach(cls, receiver: Any, *track_and_receiver: Any, clock: Callable[[], float] = time.monotonic,
               limits: MicLimits | None = None, nack: NackPolicy | None = None) -> RtpMicSource:
        """Take over ``receiver``'s audio (before or after the connection started). Also accepts
        the call's ``mic_source(track, receiver)`` signature: the track itself is not needed, its
        frames would come from aiortc's decoder."""
        if track_and_receiver:
            receiver = track_and_receiver[0]
        if not isinstance(receiver, RTCRtpReceiver):
            raise ValueError(f"RtpMicSource needs the mic's RTCRtpReceiver, not {type(receiver).__name__}")
        return cls(receiver, clock=clock, limits=limits, nack=nack)

    # --- packets in ----------------------------------------------------------------------------

    def _on_packet(self, packet: RtpPacket, copies: Sequence[red.Frame] = ()) -> None:
        """``copies``: the earlier frames a RED packet carried besides ``packet`` (its primary)."""
        if self._ended:
            return
        now = self._clock()
        self._push(packet.ssrc, packet.sequence_number, packet.timestamp, packet.payload, copies, now)
        self._release(now)

    def _push(self, ssrc: int, sequence: int, timestamp: int, payload: bytes, copies: Sequence[red.Frame],
              now: float) -> None:
        if ssrc != self._ssrc:  # the gate followed a new stream (see _follows)
            if self._ssrc is not None:
                logger.info("mic stream changed SSRC %d → %d: new sequence, new decoder", self._ssrc, ssrc)
                self.buffer.reset()  # the audio budget carries over: a new SSRC is no fresh allowance
                self._decoder = OpusDecoder(UPSTREAM_RATE)  # the old one is freed with its last reference
            self._ssrc = ssrc
        if has_inband_fec(payload):
            self._fec_packets += 1
        if copies:
            self._red_packets += 1
        for copy in copies:  # before the packet: a gap they fill must not be given up on first
            self.buffer.push(copy.sequence, copy.timestamp, copy.payload, now, redundant=True)
        self.buffer.push(sequence, timestamp, payload, now)
        if self._nack is not None:
            self._nack.send(ssrc, self.buffer.nacks_due(now))

    def push_native(self, packets: Sequence[tuple[int, int, int, int, int, bytes]],
                    statistics: Callable[[int], dict[str, int] | None]) -> None:
        """A batch from the native media path (:mod:`gateway.media.native`): ``(ssrc, payload
        type, sequence, timestamp, marker, payload)`` of packets it has gated with
        :meth:`permits_ssrc`, decrypted and parsed. Same checks and same jitter buffer as the
        packets aiortc hands over, one release for the whole batch; the receiver-report
        statistics the native side kept (``statistics(ssrc)``) go to aiortc's RTCP task."""
        if self._ended or self._native is None:
            return
        native, now = self._native, self._clock()
        if not native.receiver._enabled:
            return
        seen = set()
        for ssrc, payload_type, sequence, timestamp, marker, payload in packets:
            codec = native.codecs.get(payload_type)
            if codec is None or not self._follows(ssrc):
                continue
            seen.add(ssrc)
            mime = codec.mimeType.lower()
            if mime == "audio/opus":
                self._push(ssrc, sequence, timestamp, payload, (), now)
            elif mime == "audio/red":
                packet = RtpPacket(payload_type=payload_type, marker=marker, sequence_number=sequence,
                                   timestamp=timestamp, ssrc=ssrc, payload=payload)
                split = red.split_packet(packet, codec.parameters)
                if split is not None:
                    primary, copies = split
                    self._push(ssrc, primary.sequence_number, primary.timestamp, primary.payload, copies, now)
        if seen:
            for ssrc in seen:
                fields = statistics(ssrc)  # None: not due yet (the native path copies them every 100 ms)
                if fields is not None:
                    native.active[ssrc] = aiortc_clock.current_datetime()
                    stats = native.streams.get(ssrc)
                    if stats is None:
                        stats = native.streams[ssrc] = StreamStatistics(native.clock_rate)
                    for name, value in fields.items():
                        setattr(stats, name, value)
            self._release(now)

    def take_native(self) -> None:
        """The native media path feeds this source from now on (:meth:`push_native`)."""
        receiver = self._receiver
        self._native = _NativeView(receiver, receiver._RTCRtpReceiver__codecs,  # type: ignore[attr-defined]
                                   receiver._RTCRtpReceiver__remote_streams,  # type: ignore[attr-defined]
                                   receiver._RTCRtpReceiver__active_ssrc)  # type: ignore[attr-defined]

    def permits_ssrc(self, ssrc: int, now: float) -> bool:
        """:meth:`_permits` for the native path, which reads the SSRC from the clear header itself."""
        if self._gate.permits(ssrc, now):
            return True
        self._note_refusal()
        return False

    def _permits(self, srtp: bytes) -> bool:
        """Before decryption (the SRTP header is clear text): whether to look at the packet."""
        if len(srtp) < 12 or self._gate.permits(int.from_bytes(srtp[8:12], "big"), self._clock()):
            return True
        self._note_refusal()
        return False

    def _follows(self, ssrc: int) -> bool:
        """After decryption: whether the packet belongs to the mic's stream."""
        if self._gate.follow(ssrc):
            return True
        self._note_refusal()
        return False

    def _note_refusal(self) -> None:
        gate = self._gate
        if gate.refused_rate and "rate" not in self._warned:
            self._warned.add("rate")
            logger.warning("mic packets arrive faster than %.0f a second: the excess is dropped unread",
                           gate.max_rate)
        if gate.refused_ssrc and gate.exhausted and "ssrc" not in self._warned:
            self._warned.add("ssrc")
            logger.warning("the mic sent %d new SSRCs: packets of any further SSRC are ignored",
                           len(gate.known) - 1)

    def _release(self, now: float) -> None:
        for release in self.buffer.pop(now):
            self._emit(self._decode(release), release.received_at, release.origin)
        if self.buffer.stats.over_budget and "budget" not in self._warned:
            self._warned.add("budget")
            logger.info("mic RTP asked for audio faster than real time (numbering jumps, a flood or a stretched "
                        "stream): the excess is not sent upstream")
        if self._frames and self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        if self._nack is not None and self._ssrc is not None:  # NACKs that waited out reordering
            self._nack.send(self._ssrc, self.buffer.nacks_due(now))
        self._schedule()

    def _decode(self, release: Release) -> np.ndarray:
        try:
            return decode_release(self._decoder, release)
        except OpusError as exc:  # a corrupt packet from the browser: conceal it, keep the call
            self._decode_errors += 1
            if self._decode_errors in (1, 100, 10000):
                logger.warning("undecodable Opus packet (%s); concealed (%d so far)", exc, self._decode_errors)
        return self._decoder.conceal(release.samples // _PER_48K)

    def _emit(self, pcm: np.ndarray, received_at: float, origin: Origin) -> None:
        """Cut decoded audio into 20 ms frames (packets may hold 10–120 ms)."""
        if self._partial is not None:
            head, _, head_origin = self._partial
            pcm = np.concatenate((head, pcm))
            if head_origin is not Origin.PACKET and origin is Origin.PACKET:
                origin = head_origin  # a frame is only "decoded" if all of it was
            self._partial = None
        for start in range(0, len(pcm) - UPSTREAM_FRAME + 1, UPSTREAM_FRAME):
            if self._sink is not None:
                self._deliver(MicFrame(pcm[start:start + UPSTREAM_FRAME], received_at, origin.value, UPSTREAM_RATE))
                continue
            if len(self._frames) == MAX_QUEUED_FRAMES:
                self._dropped += 1
                if self._dropped in (1, 500, 50000):
                    logger.warning("mic frames not consumed: dropped the oldest (%d so far)", self._dropped)
            self._frames.append(MicFrame(pcm[start:start + UPSTREAM_FRAME], received_at, origin.value, UPSTREAM_RATE))
        rest = len(pcm) % UPSTREAM_FRAME
        if rest:
            self._partial = (pcm[-rest:], received_at, origin)

    def _schedule(self) -> None:
        """One timer per source, at or before the buffer's next deadline. Deadlines mostly move
        later as packets arrive; a timer already due earlier is kept (when it fires it finds
        nothing due and re-arms), which costs less than re-arming on every packet."""
        deadline = None if self._ended else self.buffer.deadline()
        if self._timer is not None:
            if deadline is not None and self._timer_deadline is not None and self._timer_deadline <= deadline:
                return
            self._timer.cancel()
            self._timer = None
        self._timer_deadline = deadline
        if deadline is not None:
            self._timer = self._loop.call_later(max(0.0, deadline - self._clock()), self._on_deadline)

    def _on_deadline(self) -> None:
        self._timer = None
        self._release(self._clock())

    def _on_receiver_stopped(self) -> None:
        """Hang-up, DTLS closed or RTCP BYE: the stream has ended (queued frames still drain)."""
        self.stop()

    # --- frames out ----------------------------------------------------------------------------

    def deliver(self, sink: Callable[[MicFrame], None]) -> None:
        """Push mode (:func:`~gateway.media.inbound_audio.pump_mic`): each frame goes to ``sink``
        as soon as it is cut, inside the packet batch or deadline that made it — no consumer
        task to wake between the decoder and the upstream. Frames already queued go first.
        :meth:`recv` then only waits for the end: MediaStreamError, or what ``sink`` raised."""
        self._sink = sink
        while self._frames and self._sink is not None:
            self._deliver(self._frames.popleft())

    def _deliver(self, frame: MicFrame) -> None:
        assert self._sink is not None
        try:
            self._sink(frame)
        except Exception as exc:  # the consumer's failure is its owner's to see, as in pull mode
            self._sink, self._sink_error = None, exc
            if self._waiter is not None and not self._waiter.done():
                self._waiter.set_result(None)

    async def recv(self) -> MicFrame:
        while not self._frames or self._sink_error is not None:
            if self._sink_error is not None:
                raise self._sink_error
            if self._ended:
                raise MediaStreamError
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._frames.popleft()

    def stop(self) -> None:
        if not self._ended:
            self._log_limits()
        self._ended = True
        if self._nack is not None:
            self._nack.close()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # --- statistics ----------------------------------------------------------------------------

    def _log_limits(self) -> None:
        counts, gate = self.buffer.stats, self._gate
        if counts.over_budget or gate.refused_ssrc or gate.refused_rate:
            logger.info("mic kept to real time: %d frames not sent upstream (%.1f s refused by the budget), %d "
                        "packets of unfollowed SSRCs and %d beyond the packet rate dropped unread, %d SSRC changes",
                        counts.over_budget, self.buffer.budget.refused_s, gate.refused_ssrc, gate.refused_rate,
                        gate.changes)

    def stats(self) -> ReceiveStats:
        buffer, counts = self.buffer, self.buffer.stats
        return ReceiveStats(
            packets_sent=buffer.packets_sent, packets_lost=buffer.packets_lost, late=counts.late,
            duplicate=counts.duplicate, fec_packets=self._fec_packets, frames_decoded=counts.decoded,
            frames_fec=counts.fec, frames_concealed=counts.concealed, frames_inserted=counts.inserted,
            decode_errors=self._decode_errors,
            jitter_buffer_ms={"p50": counts.delay_percentile(50) * 1000, "p95": counts.delay_percentile(95) * 1000},
            target_delay_ms=buffer.wait * 1000, red_packets=self._red_packets, frames_red=counts.red,
            frames_over_budget=counts.over_budget, ssrc_changes=self._gate.changes,
            packets_refused=self._gate.refused_ssrc + self._gate.refused_rate)

    def receive_stats(self) -> dict[str, Any]:
        """The call's summary fields (see :class:`~gateway.media.inbound_audio.MicSource`), and more."""
        stats = self.stats()
        return stats.as_dict() | {"sent_by_peer": stats.packets_sent}


def decode_release(decoder: OpusDecoder, release: Release) -> np.ndarray:
    """The 24 kHz samples of one jitter-buffer release (raises :class:`OpusError` for a corrupt payload)."""
    if release.origin is Origin.PACKET or release.origin is Origin.RED:
        return decoder.decode(release.payload or b"")
    if release.origin is Origin.FEC:
        return decoder.decode_fec(release.payload or b"", release.samples // _PER_48K)
    return decoder.conceal(release.samples // _PER_48K)


@dataclass
class _NativeView:
    """What :meth:`RtpMicSource.push_native` keeps of the receiver, as aiortc's handler does."""

    receiver: RTCRtpReceiver
    codecs: dict[int, Any]
    streams: dict[int, StreamStatistics]
    active: dict[int, Any]
    clock_rate: int = WEBRTC_RATE
