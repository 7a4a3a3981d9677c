"""48 kHz ⇄ 24 kHz conversion with a 0.65 ms linear-phase half-band FIR.

WebRTC Opus runs at 48 kHz; the Realtime API's ``audio/pcm`` is 24 kHz. The ratio is exactly
two, so a half-band filter does the whole job. Streaming soxr was measured holding back up to
20 ms (LQ) or 38 ms (MQ/HQ) because it emits output in blocks; this filter holds back a fixed
31 samples at 48 kHz (0.65 ms), is flat to 10.5 kHz and rejects ≥ 81 dB from 14.5 kHz.

Half of a half-band filter's taps are zero, and its centre tap is the only non-zero odd tap, so
each direction is one 32-tap convolution plus a scaled, delayed copy of the other phase.
"""

from __future__ import annotations

import numpy as np

_TAPS = 63
_CENTER = (_TAPS - 1) // 2  # 31, an odd index
_BETA = 8.0


def _design() -> np.ndarray:
    n = np.arange(_TAPS)
    h = 0.5 * np.sinc((n - _CENTER) / 2) * np.kaiser(_TAPS, _BETA)
    return (h / h.sum()).astype(np.float32)


_H = _design()
_H_EVEN = _H[0::2].copy()  # 32 taps, all non-zero
_H_CENTER = float(_H[_CENTER])
_EVEN_HISTORY = len(_H_EVEN) - 1  # 31
_ODD_DELAY = (_CENTER + 1) // 2  # 16: centre tap index 2j+1 with j = 15, one more for the odd phase

DELAY_SAMPLES_48K = _CENTER
DELAY_MS = _CENTER / 48.0


def _to_int16(samples: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(samples), -32768, 32767).astype(np.int16)


class Downsampler:
    """Streaming 48 kHz → 24 kHz (int16 mono in, int16 mono out)."""

    def __init__(self) -> None:
        self._even = np.zeros(_EVEN_HISTORY, np.float32)
        self._odd = np.zeros(_ODD_DELAY, np.float32)
        self._carry = np.zeros(0, np.float32)

    def process(self, pcm: np.ndarray) -> np.ndarray:
        x = pcm.astype(np.float32)
        if len(self._carry):
            x = np.concatenate((self._carry, x))
        if len(x) % 2:
            self._carry, x = x[-1:], x[:-1]
        else:
            self._carry = x[:0]
        even = np.concatenate((self._even, x[0::2]))
        odd = np.concatenate((self._odd, x[1::2]))
        count = len(x) // 2
        y = np.convolve(even, _H_EVEN, mode="valid")
        y += _H_CENTER * odd[:count]
        self._even = even[-_EVEN_HISTORY:]
        self._odd = odd[-_ODD_DELAY:]
        return _to_int16(y)


class Upsampler:
    """Streaming 24 kHz → 48 kHz (int16 mono in, int16 mono out)."""

    def __init__(self) -> None:
        self._history = np.zeros(_EVEN_HISTORY, np.float32)

    def process(self, pcm: np.ndarray) -> np.ndarray:
        x = np.concatenate((self._history, pcm.astype(np.float32)))
        count = len(pcm)
        out = np.empty(2 * count, np.float32)
        out[0::2] = np.convolve(x, 2.0 * _H_EVEN, mode="valid")
        start = _EVEN_HISTORY - (_ODD_DELAY - 1)
        out[1::2] = (2.0 * _H_CENTER) * x[start:start + count]
        self._history = x[-_EVEN_HISTORY:]
        return _to_int16(out)

    def reset(self) -> None:
        """Forget the tail of the previous stream (after a flush nothing of it may leak out)."""
        self._history[:] = 0.0
