"""The input audio buffer of one engine session: uncommitted mic audio, bounded.

Positions are milliseconds of the session's whole input stream (what ``audio_start_ms`` and
``audio_end_ms`` count), so cutting the front never shifts what a later event reports. The
buffer never holds more than ``max_ms``: a client that streams without committing
(``turn_detection: null``, or one endless turn) loses its oldest audio, not the engine its memory.
Sans-I/O: plain numpy, no clock.
"""

from __future__ import annotations

import collections

import numpy as np

from ..core.audio_format import UPSTREAM_RATE as RATE


class InputAudioBuffer:
    def __init__(self, max_ms: float) -> None:
        self.max_samples = int(max_ms * RATE / 1000)
        self._chunks: collections.deque[np.ndarray] = collections.deque()
        self._samples = 0
        self.start_ms = 0.0  # stream position of the first buffered sample
        self.end_ms = 0.0  # stream position after the last appended sample

    @property
    def ms(self) -> float:
        return self._samples * 1000 / RATE

    def append(self, pcm: np.ndarray) -> int:
        """Add ``pcm``; returns how many of the oldest samples had to go to stay within the cap."""
        self._chunks.append(pcm)
        self._samples += len(pcm)
        self.end_ms += len(pcm) * 1000 / RATE
        overflow = self._samples - self.max_samples
        if overflow > 0:
            self._cut(overflow)
        return max(0, overflow)

    def _joined(self) -> np.ndarray:
        if len(self._chunks) != 1:
            joined = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
            self._chunks = collections.deque([joined])
        return self._chunks[0]

    def _cut(self, samples: int) -> None:
        """Drop the oldest ``samples`` (whole chunks first: no copy of what stays)."""
        samples = min(samples, self._samples)
        self._samples -= samples
        self.start_ms += samples * 1000 / RATE
        while samples and self._chunks:
            first = self._chunks[0]
            if len(first) <= samples:
                self._chunks.popleft()
                samples -= len(first)
            else:
                self._chunks[0] = first[samples:]
                samples = 0

    def drop_before(self, ms: float) -> None:
        """Forget audio older than stream position ``ms``."""
        self._cut(max(0, int((ms - self.start_ms) * RATE / 1000)))

    def keep_last(self, ms: float) -> None:
        self.drop_before(self.end_ms - ms)

    def audio(self, end_ms: float | None = None) -> tuple[np.ndarray, tuple[float, float]]:
        """The buffered audio up to stream position ``end_ms`` (None: all of it), and a key naming
        exactly that stretch of the stream (equal keys = equal audio)."""
        pcm = self._joined()
        if end_ms is not None:
            pcm = pcm[:max(0, int((end_ms - self.start_ms) * RATE / 1000))]
        return pcm, (self.start_ms, self.start_ms + len(pcm) * 1000 / RATE)

    def clear(self) -> None:
        self._chunks, self._samples = collections.deque(), 0
        self.start_ms = self.end_ms
