"""The caller's voice on its way in: 20 ms mic frames → 24 kHz PCM16 → the upstream.

A :class:`MicSource` yields decoded mono 20 ms frames on a steady cadence, at 24 kHz (ready for
the upstream) or 48 kHz (resampled here). Two sources: the gateway's own receive path (``audio_receiver.py``: a jitter buffer that holds
nothing back on a clean network, Opus FEC and concealment) and :class:`TrackMicSource` over
aiortc's own jitter buffer and decoder (``RECEIVE_PATH=aiortc``, for comparison).
:func:`pump_mic` is the one loop that turns frames into upstream audio, whichever source feeds it.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from aiortc.mediastreams import MediaStreamTrack
from av import AudioFrame

from ..core.audio_format import UPSTREAM_RATE, WEBRTC_RATE
from ..core.stats import percentiles
from .resample import Downsampler
from .rtp import RtpHandler, extend_sequence, replace_rtp_handler


@dataclass(slots=True)
class MicFrame:
    pcm: np.ndarray  # int16, mono, 20 ms at ``rate``
    received_at: float  # time.monotonic() when the RTP packet used for it arrived
    origin: str = "decoded"  # decoded | fec (rebuilt from the next packet) | concealed (invented)
    rate: int = WEBRTC_RATE  # WEBRTC_RATE (aiortc's decoder) or UPSTREAM_RATE (the gateway's own)


class MicSource(Protocol):
    async def recv(self) -> MicFrame:
        """The next frame; raises ``aiortc.mediastreams.MediaStreamError`` when the stream ended."""

    def stop(self) -> None: ...

    def receive_stats(self) -> dict[str, Any]:
        """{"jitter_buffer_ms": {"p50", "p95"}, "sent_by_peer": packets the browser numbered}."""


def mono(frame: AudioFrame) -> np.ndarray:
    """First channel of a packed int16 frame: WebRTC mic audio is mono even when sent as stereo."""
    samples = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if channels == 1 or samples.shape[0] > 1:  # mono, or planar (one row per channel)
        return samples[0]
    return samples[0, ::channels]


class TrackMicSource:
    """Frames decoded by aiortc itself (its fixed 80 ms jitter buffer, no FEC, no concealment).

    Given the receiver, it also notes when each RTP packet arrived, so the delay aiortc's
    buffer adds is measured the same way as the gateway's own path (for comparison).
    """

    def __init__(self, track: MediaStreamTrack, receiver: Any = None) -> None:
        self._track = track
        self._arrivals: dict[int, float] = {}  # RTP timestamp since the first packet → arrival
        self._first_timestamp: int | None = None
        self._sequence = _SequenceSpan()
        self.delays: collections.deque[float] = collections.deque(maxlen=3000)
        if receiver is not None:
            replace_rtp_handler(receiver, self._noting_arrival)

    def _noting_arrival(self, handle: RtpHandler) -> RtpHandler:
        async def noting_arrival(packet: Any, arrival_time_ms: int) -> None:
            if self._first_timestamp is None:
                self._first_timestamp = packet.timestamp
            self._arrivals[(packet.timestamp - self._first_timestamp) % (1 << 32)] = time.monotonic()
            self._sequence.add(packet.sequence_number)
            if len(self._arrivals) > 500:
                del self._arrivals[next(iter(self._arrivals))]
            await handle(packet, arrival_time_ms)

        return noting_arrival

    async def recv(self) -> MicFrame:
        frame = await self._track.recv()
        assert isinstance(frame, AudioFrame)
        if frame.sample_rate != WEBRTC_RATE:
            raise ValueError(f"expected 48 kHz Opus output, got {frame.sample_rate} Hz")
        now = time.monotonic()
        arrival = self._arrivals.pop(frame.pts, None) if frame.pts is not None else None
        if arrival is not None:
            self.delays.append(now - arrival)
        return MicFrame(mono(frame), arrival if arrival is not None else now)

    def receive_stats(self) -> dict[str, Any]:
        held = percentiles((delay * 1000 for delay in self.delays), 0.5, 0.95)
        return {"jitter_buffer_ms": dict(zip(("p50", "p95"), held, strict=False)), "sent_by_peer": self._sequence.count}

    def stop(self) -> None:
        self._track.stop()


class _SequenceSpan:
    """How many packets a sender numbered, from the 16-bit RTP sequence numbers seen."""

    def __init__(self) -> None:
        self._first: int | None = None
        self._highest = 0

    def add(self, seq: int) -> None:
        if self._first is None:
            self._first = self._highest = seq
            return
        self._highest = max(self._highest, extend_sequence(seq, self._highest))

    @property
    def count(self) -> int:
        return 0 if self._first is None else self._highest - self._first + 1


AudioSink = Callable[[bytes, MicFrame], None]


async def pump_mic(source: MicSource, sink: AudioSink) -> None:
    """Forward every frame as soon as it is decoded, no batching (48 kHz frames: 0.65 ms held
    back by the resampler). A source that can push (:meth:`RtpMicSource.deliver
    <gateway.media.audio_receiver.RtpMicSource.deliver>`) hands each frame to ``sink`` in the
    step that decoded it: no task wake-up and no loop step between the decoder and the upstream.

    Runs until the source ends (MediaStreamError propagates to the owner, the call), or ``sink``
    raises (that too).
    """
    downsampler = Downsampler()

    def forward(frame: MicFrame) -> None:
        pcm = frame.pcm if frame.rate == UPSTREAM_RATE else downsampler.process(frame.pcm)
        sink(pcm.tobytes(), frame)

    deliver = getattr(source, "deliver", None)
    if deliver is not None:
        deliver(forward)
    while True:  # push mode: returns only at the end (MediaStreamError) or with what forward() raised
        forward(await source.recv())
