"""A 64-word pt-BR passage for word error rates that can resolve a few points.

The test WAVs in tests/data are single sentences (27 words for three of them: one word is 3.7
points of WER). This passage is synthesised once by the offline engine's Kokoro voice (the same
text, voice and model give the same samples) and cached beside the engine's models; the WER
reference is Whisper's transcript of this clean audio, so the voice's own accent cancels out.

    python bench/passage.py            # writes (or finds) the WAV and prints its path and length
"""

from __future__ import annotations

import sys
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.engine.models import default_cache_dir, packaged_kokoro  # noqa: E402

SENTENCES = (
    "O Brasil é o maior país da América do Sul.",
    "Sua capital é Brasília, construída no planalto central.",
    "O rio Amazonas atravessa a floresta e leva muita água até o oceano.",
    "Nas grandes cidades, milhões de pessoas trabalham todos os dias.",
    "A música, a comida e o futebol fazem parte da vida do povo.",
    "No inverno o sul pode ficar frio, enquanto o norte continua quente.",
)
VOICE = "jm_kumo"
RATE = 24000
PAUSE_S = 0.6  # between sentences


def passage_wav(cache_dir: Path | None = None) -> Path:
    """The passage's WAV (24 kHz mono), synthesised on first use (~30 s of one core)."""
    path = (cache_dir or default_cache_dir()) / "bench" / f"pt_br_passage_{VOICE}.wav"
    if path.is_file():
        return path
    from gateway.engine.tts import KokoroVoice

    voice = KokoroVoice(packaged_kokoro(cache_dir or default_cache_dir()), VOICE, 1)
    pause = np.zeros(int(PAUSE_S * RATE), np.int16)
    pieces = []
    for sentence in SENTENCES:
        pieces += [voice.synthesize(sentence).astype(np.int16), pause]
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    with wave.open(str(partial), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(np.concatenate(pieces[:-1]).tobytes())
    partial.replace(path)
    return path


if __name__ == "__main__":
    wav = passage_wav()
    with wave.open(str(wav)) as w:
        print(f"{wav}: {w.getnframes() / w.getframerate():.1f} s, {sum(len(s.split()) for s in SENTENCES)} words")
