"""Word error rate of what reached the upstream, sentence by sentence, so the same audio always
scores the same and nothing is cut off.

Whisper's window is 30 s and :class:`~gateway.engine.stt.Transcriber` keeps the first 30 s of
what it is given. The upstream of a bench call receives the whole call: the silence before
the client speaks (1.5 s plus set-up), the 29.25 s passage, the silence after — so one
transcript of it lost the passage's last words, a different number of them per call (how much
audio preceded the speech varies with set-up), and scored that as errors of the network.

So here the received audio is aligned to what the client said (cross-correlation of 10 ms
log-energy envelopes: the whole, then each sentence within ±0.4 s, since concealment inserted
during stalls stretches the stream a little), cut into the said sentences with 0.25 s of their
pauses around them, and each piece is transcribed alone, the clean original's pieces giving
the reference the same way. Decoding is greedy (``beam_size=1``, no sampling, no temperature
fallback, the engine's fixed context as previous text for every piece, none carried over from
the piece before), so a piece's words depend on its samples only: :meth:`Scorer.check_repeatable`
scores a recording twice and says whether the two agree.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

RATE = 24000
HOP = RATE // 100  # 10 ms envelope frames
LEAD_S = 1.5  # the client's silence before, between and after what it says (tests/netbed/call_client.py)
MARGIN_S = 0.25  # of the pause kept around each sentence (the passage's pauses are 0.6 s)
SEARCH_S = 0.4  # how far a sentence may have drifted from where the whole passage aligned
MIN_PAUSE_S = 0.45  # silence this long between sounds separates sentences
SILENT_RMS = 30.0  # int16


def words(text: str) -> list[str]:
    return re.sub(r"[^\w\s]", " ", text.lower()).split()


def wer(reference: Sequence[str], hypothesis: Sequence[str]) -> float:
    d = np.arange(len(hypothesis) + 1)
    for i, ref in enumerate(reference, 1):
        previous, d[0] = d[0], i
        for j, hyp in enumerate(hypothesis, 1):
            previous, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, previous + (ref != hyp))
    return float(d[-1]) / max(1, len(reference))


def said(pieces: Sequence[np.ndarray]) -> np.ndarray:
    """What the call client says (24 kHz): 1.5 s of silence, then each WAV followed by 1.5 s."""
    pause = np.zeros(int(LEAD_S * RATE), np.int16)
    return np.concatenate([pause, *[x for piece in pieces for x in (piece.astype(np.int16), pause)]])


def envelope(pcm: np.ndarray) -> np.ndarray:
    """Log energy per 10 ms."""
    frames = len(pcm) // HOP
    x = pcm[:frames * HOP].astype(np.float64).reshape(frames, HOP)
    return np.log10(1.0 + np.sqrt(np.mean(x * x, axis=1)))


def spans(pcm: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) in 10 ms frames of the sounds separated by pauses of at least MIN_PAUSE_S."""
    frames = len(pcm) // HOP
    x = pcm[:frames * HOP].astype(np.float64).reshape(frames, HOP)
    loud = np.sqrt(np.mean(x * x, axis=1)) > SILENT_RMS
    out: list[tuple[int, int]] = []
    gap = int(MIN_PAUSE_S * 100)
    for index in np.flatnonzero(loud):
        if out and index - out[-1][1] < gap:
            out[-1] = (out[-1][0], int(index) + 1)
        else:
            out.append((int(index), int(index) + 1))
    return out


def best_lag(reference: np.ndarray, received: np.ndarray, lo: int, hi: int) -> int:
    """The lag (frames, received later by it) in [lo, hi] with the highest normalised correlation."""
    best, best_score = lo, -np.inf
    ref = reference - reference.mean()
    for lag in range(lo, hi + 1):
        if lag < 0 or lag + len(ref) > len(received):
            continue
        window = received[lag:lag + len(ref)]
        window = window - window.mean()
        score = float(ref @ window) / (float(np.linalg.norm(window)) * float(np.linalg.norm(ref)) + 1e-9)
        if score > best_score:
            best, best_score = lag, score
    return best


@dataclass
class Score:
    wer: float
    lag_s: float  # how much later the said audio began in the received audio than in the original
    drift_s: float  # how much later the last sentence was than the first (stretching)
    hypothesis: list[str]


class Scorer:
    """``transcribe(pcm24) -> text`` (e.g. :meth:`gateway.engine.stt.Transcriber.transcribe` in pt);
    ``pieces``: what the client says, in order (24 kHz int16)."""

    def __init__(self, transcribe: Callable[[np.ndarray], str], pieces: Sequence[np.ndarray]) -> None:
        self._transcribe = transcribe
        self.original = said(pieces)
        self._envelope = envelope(self.original)
        self.sentences = spans(self.original)
        self.reference_pieces = [words(transcribe(self._cut(self.original, s, e, 0))) for s, e in self.sentences]
        self.reference = [w for piece in self.reference_pieces for w in piece]

    @staticmethod
    def _cut(pcm: np.ndarray, start: int, end: int, lag: int) -> np.ndarray:
        margin = int(MARGIN_S * 100)
        lo, hi = max(0, start + lag - margin), max(0, end + lag + margin)
        return pcm[lo * HOP:hi * HOP]

    def score(self, received: np.ndarray) -> Score:
        got = envelope(received)
        first, last = self.sentences[0][0], self.sentences[-1][1]
        whole = best_lag(self._envelope[first:last], got, -first, len(got)) if len(got) > last - first else 0
        lag = whole - first
        hypothesis: list[str] = []
        lags = []
        search = int(SEARCH_S * 100)
        for start, end in self.sentences:
            lag = best_lag(self._envelope[start:end], got, start + lag - search, start + lag + search) - start
            lags.append(lag)
            hypothesis += words(self._transcribe(self._cut(received, start, end, lag)))
        return Score(wer(self.reference, hypothesis), lags[0] / 100, (lags[-1] - lags[0]) / 100, hypothesis)

    def check_repeatable(self, received: np.ndarray) -> tuple[bool, float, float]:
        """Score ``received`` twice: (same words both times, first WER, second WER)."""
        one, two = self.score(received), self.score(received)
        return one.hypothesis == two.hypothesis, one.wer, two.wer
