"""The caller's voice on its way in: 20 ms mic frames → 24 kHz PCM16 → the upstream.

A :class:`MicSource` yields decoded 48 kHz mono frames on a steady 20 ms cadence. Two
sources: the gateway's own receive path (``audio_receiver.py``: a jitter buffer that holds
nothing back on a clean network, Opus FEC and concealment) and :class:`TrackMicSource` over
aiortc's own jitter buffer and decoder (``RECEIVE_PATH=aiortc``, for comparison).
:func:`pump_mic` is the one loop that turns frames into upstream audio, whichever source feeds it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from aiortc.mediastreams import MediaStreamTrack
from av import AudioFrame

from .resample import Downsampler

FRAME_SAMPLES_48K = 960


@dataclass(slots=True)
class MicFrame:
    pcm: np.ndarray  # int16, mono, 48 kHz, 960 samples (20 ms)
    received_at: float  # time.monotonic() when the RTP packet used for it arrived
    origin: str = "decoded"  # decoded | fec (rebuilt from the next packet) | concealed (invented)


class MicSource(Protocol):
    async def recv(self) -> MicFrame:
        """The next frame; raises ``aiortc.mediastreams.MediaStreamError`` when the stream ended."""

    def stop(self) -> None: ...


def mono(frame: AudioFrame) -> np.ndarray:
    """First channel of a packed int16 frame: WebRTC mic audio is mono even when sent as stereo."""
    samples = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if channels == 1 or samples.shape[0] > 1:  # mono, or planar (one row per channel)
        return samples[0]
    return samples[0, ::channels]


class TrackMicSource:
    """Frames decoded by aiortc itself (its fixed 80 ms jitter buffer, no FEC, no concealment)."""

    def __init__(self, track: MediaStreamTrack) -> None:
        self._track = track

    async def recv(self) -> MicFrame:
        frame = await self._track.recv()
        assert isinstance(frame, AudioFrame)
        if frame.sample_rate != 48000:
            raise ValueError(f"expected 48 kHz Opus output, got {frame.sample_rate} Hz")
        return MicFrame(mono(frame), time.monotonic())

    def stop(self) -> None:
        self._track.stop()


AudioSink = Callable[[bytes, MicFrame], None]


async def pump_mic(source: MicSource, sink: AudioSink) -> None:
    """Forward every frame as soon as it is decoded: 0.65 ms held back by the resampler, no batching.

    Runs until the source ends (MediaStreamError propagates to the owner, the call).
    """
    downsampler = Downsampler()
    while True:
        frame = await source.recv()
        sink(downsampler.process(frame.pcm).tobytes(), frame)
