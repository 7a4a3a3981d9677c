"""The gateway's own audio receive path: RTP → jitter buffer → Opus (FEC/PLC) → mic frames.

aiortc's audio path adds a fixed 80 ms, stalls after a loss until 16 newer packets pile up,
never conceals and never uses FEC, and decodes in a thread per receiver. This path takes the
RTP packets from the receiver instead (see :func:`_hook`), keeps aiortc's per-stream statistics
so its RTCP receiver reports to the browser stay right, and decodes in the event loop (~40 µs a
frame): a packet in order becomes a 20 ms mic frame the moment it arrives.

The hook relies on aiortc 1.16 internals (name-mangled attributes of ``RTCRtpReceiver``); they
are checked when a call starts, with a message saying how to fall back (``RECEIVE_PATH=aiortc``).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from typing import Any

from aiortc import clock as aiortc_clock
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpreceiver import RTCRtpReceiver, StreamStatistics

from .inbound_audio import MicFrame
from .jitter_buffer import JitterBuffer, Origin
from .opus import FRAME_SAMPLES, OpusDecoder

logger = logging.getLogger(__name__)
_INTERNALS = ("_RTCRtpReceiver__codecs", "_RTCRtpReceiver__remote_streams", "_RTCRtpReceiver__active_ssrc",
              "_RTCRtpReceiver__started", "_RTCRtpReceiver__stop_decoder")


class ReceivePathError(RuntimeError):
    pass


class RtpMicSource:
    """A :class:`~gateway.inbound_audio.MicSource` fed straight from a receiver's RTP packets."""

    def __init__(self, receiver: RTCRtpReceiver, clock: Callable[[], float] = time.monotonic) -> None:
        missing = [name for name in _INTERNALS if not hasattr(receiver, name)]
        if missing:
            raise ReceivePathError(f"aiortc's RTCRtpReceiver changed (missing {missing}); pin aiortc==1.16.0 "
                                   "or set RECEIVE_PATH=aiortc")
        self._receiver = receiver
        self._clock = clock
        self.buffer = JitterBuffer()
        self._decoder = OpusDecoder()
        self._frames: collections.deque[MicFrame] = collections.deque()
        self._ready = asyncio.Event()
        self._ssrc: int | None = None
        self._last_samples = FRAME_SAMPLES
        self._stopped = False
        _hook(receiver, self._on_packet)

    @classmethod
    def attach(cls, track: Any, receiver: RTCRtpReceiver) -> RtpMicSource:
        """Factory with the call's ``mic_source(track, receiver)`` signature."""
        return cls(receiver)

    def _on_packet(self, ssrc: int, sequence_number: int, payload: bytes) -> None:
        now = self._clock()
        if ssrc != self._ssrc:
            if self._ssrc is not None:
                logger.info("mic stream changed SSRC: starting a new sequence")
                self.buffer.reset()
                self._decoder = OpusDecoder()
            self._ssrc = ssrc
        self.buffer.push(sequence_number, payload, now)
        self._release(now)

    def _release(self, now: float) -> None:
        for release in self.buffer.pop(now):
            if release.origin is Origin.PACKET:
                pcm = self._decoder.decode(release.payload or b"")
                self._last_samples = len(pcm) or self._last_samples
            elif release.origin is Origin.FEC:
                pcm = self._decoder.decode_fec(release.payload or b"", self._last_samples)
            else:
                pcm = self._decoder.conceal(self._last_samples)
            self._frames.append(MicFrame(pcm, release.received_at, release.origin.value))
        if self._frames:
            self._ready.set()

    async def recv(self) -> MicFrame:
        while not self._frames:
            if self._stopped:
                raise MediaStreamError
            deadline = self.buffer.deadline()
            self._ready.clear()
            try:
                timeout = None if deadline is None else max(0.0, deadline - self._clock())
                await asyncio.wait_for(self._ready.wait(), timeout)
            except asyncio.TimeoutError:
                self._release(self._clock())  # a missing packet's time is up: rebuild or conceal it
        return self._frames.popleft()

    def receive_stats(self) -> dict[str, Any]:
        stats = self.buffer.stats
        return {"jitter_buffer_ms": {"p50": stats.delay_percentile(50) * 1000, "p95": stats.delay_percentile(95) * 1000},
                "sent_by_peer": self.buffer.packets_sent}

    def stop(self) -> None:
        self._stopped = True
        self._ready.set()


def _hook(receiver: RTCRtpReceiver, on_packet: Callable[[int, int, bytes], None]) -> None:
    """Route the receiver's RTP packets to ``on_packet`` and retire aiortc's decoder thread.

    What stays from aiortc's ``_handle_rtp_packet``: the enabled check, the codec check, and the
    per-SSRC statistics its RTCP task turns into receiver reports (loss, jitter) for the browser.
    """
    codecs = receiver._RTCRtpReceiver__codecs  # type: ignore[attr-defined]
    streams = receiver._RTCRtpReceiver__remote_streams  # type: ignore[attr-defined]
    active = receiver._RTCRtpReceiver__active_ssrc  # type: ignore[attr-defined]

    async def handle_rtp_packet(packet: Any, arrival_time_ms: int) -> None:
        if not receiver._enabled:
            return
        codec = codecs.get(packet.payload_type)
        if codec is None or codec.mimeType.lower() != "audio/opus":
            return
        if packet.ssrc not in streams:
            streams[packet.ssrc] = StreamStatistics(codec.clockRate)
        streams[packet.ssrc].add(packet)
        active[packet.ssrc] = aiortc_clock.current_datetime()
        on_packet(packet.ssrc, packet.sequence_number, packet.payload)

    receiver._handle_rtp_packet = handle_rtp_packet  # type: ignore[method-assign]
    if receiver._RTCRtpReceiver__started:  # type: ignore[attr-defined]
        receiver._RTCRtpReceiver__stop_decoder()  # type: ignore[attr-defined]
        return
    receive = receiver.receive

    async def receive_without_decoder(parameters: Any) -> None:
        await receive(parameters)
        receiver._RTCRtpReceiver__stop_decoder()  # type: ignore[attr-defined]  # frames never reach it

    receiver.receive = receive_without_decoder  # type: ignore[method-assign]
