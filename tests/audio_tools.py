"""Signals and measurements for audio assertions: voice-like test speech, level and pitch."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

DATA = Path(__file__).parent / "data"


def voiced(seconds: float, pitch_hz: float, rate: int, *, level: float = 8000.0, seed: int = 0) -> np.ndarray:
    """A vowel-like int16 signal: a harmonic series at ``pitch_hz`` with a syllable envelope.

    Real enough for an energy VAD and a pitch tracker, deterministic for assertions.
    """
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    signal = np.zeros_like(t)
    for harmonic in range(1, 9):
        if harmonic * pitch_hz >= rate / 2:
            break
        signal += np.sin(2 * np.pi * harmonic * pitch_hz * t + rng.uniform(0, 2 * np.pi)) / harmonic
    syllables = 0.6 + 0.4 * np.abs(np.sin(np.pi * 4 * t))  # four "syllables" per second
    fade = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.02)
    signal *= syllables * fade
    return (signal / np.max(np.abs(signal)) * level).astype(np.int16)


def rms(pcm: np.ndarray) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) if len(pcm) else 0.0


def pitch(pcm: np.ndarray, rate: int, fmin: float = 60.0, fmax: float = 500.0) -> float:
    """Fundamental frequency by autocorrelation (good enough for steady voiced test signals)."""
    x = pcm.astype(np.float64)
    x -= x.mean()
    corr = np.fft.irfft(np.abs(np.fft.rfft(x, 2 * len(x))) ** 2)[: len(x)]
    lo, hi = int(rate / fmax), int(rate / fmin)
    lag = lo + int(np.argmax(corr[lo:hi]))
    return rate / lag


def active_segments(pcm: np.ndarray, rate: int, threshold: float = 300.0, frame_ms: int = 20) -> list[tuple[float, float]]:
    """(start_s, end_s) of runs of frames whose RMS exceeds ``threshold``."""
    n = rate * frame_ms // 1000
    segments: list[tuple[float, float]] = []
    start = None
    for i in range(len(pcm) // n):
        loud = rms(pcm[i * n:(i + 1) * n]) > threshold
        if loud and start is None:
            start = i
        elif not loud and start is not None:
            segments.append((start * frame_ms / 1000, i * frame_ms / 1000))
            start = None
    if start is not None:
        segments.append((start * frame_ms / 1000, len(pcm) // n * frame_ms / 1000))
    return segments


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path)) as wav:
        assert wav.getsampwidth() == 2, "16-bit WAV expected"
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), np.int16)
        if wav.getnchannels() > 1:
            pcm = pcm[:: wav.getnchannels()]
        return pcm, wav.getframerate()
