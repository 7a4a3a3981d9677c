"""The 48 ⇄ 24 kHz half-band resampler: delay, fidelity, aliasing, streaming equivalence."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.media.resample import DELAY_MS, Downsampler, Upsampler
from tests.audio_tools import pitch, rms


def tone(freq: float, rate: int, seconds: float = 1.0, level: float = 10000) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (level * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def stream(resampler, pcm: np.ndarray, chunk: int) -> np.ndarray:
    return np.concatenate([resampler.process(pcm[i:i + chunk]) for i in range(0, len(pcm), chunk)])


def test_holds_back_under_one_millisecond() -> None:
    assert DELAY_MS < 1.0
    impulse = np.zeros(4800, np.int16)
    impulse[960] = 30000
    out = stream(Downsampler(), impulse, 960)
    assert len(out) == 2400  # every input frame yields its output at once: nothing is buffered
    assert abs(np.argmax(out) * 2 - 960 - DELAY_MS * 48) <= 2


@pytest.mark.parametrize("freq", [200.0, 1000.0, 4000.0, 9000.0])
def test_speech_band_passes_at_full_level_and_pitch(freq: float) -> None:
    x = tone(freq, 48000)
    down = stream(Downsampler(), x, 960)
    assert rms(down[1000:]) == pytest.approx(rms(x), rel=0.02)
    up = stream(Upsampler(), down, 480)
    assert rms(up[2000:]) == pytest.approx(rms(x), rel=0.03)
    if freq < 500:
        assert pitch(up[2000:], 48000) == pytest.approx(freq, rel=0.01)


def test_rejects_what_would_alias() -> None:
    x = tone(15000, 48000)
    down = stream(Downsampler(), x, 960)
    assert 20 * np.log10(rms(down[1000:]) / rms(x)) < -60
    # Upsampling leaves no image of a 3 kHz tone at 21 kHz.
    up = stream(Upsampler(), tone(3000, 24000), 480)
    spectrum = np.abs(np.fft.rfft(up[4800:] * np.hanning(len(up) - 4800)))
    freqs = np.fft.rfftfreq(len(up) - 4800, 1 / 48000)
    image = spectrum[(freqs > 20000) & (freqs < 22000)].max()
    assert 20 * np.log10(image / spectrum.max()) < -60


def test_chunking_does_not_change_the_output() -> None:
    x = (np.random.default_rng(3).standard_normal(9600) * 3000).astype(np.int16)
    whole = Downsampler().process(x)
    assert np.array_equal(stream(Downsampler(), x, 333), whole)  # odd chunks carry a sample
    y = whole
    assert np.array_equal(stream(Upsampler(), y, 77), Upsampler().process(y))
