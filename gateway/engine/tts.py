"""Text to speech in Brazilian Portuguese at 24 kHz.

Kokoro-82M (int8 ONNX) ships with Japanese voices only, but its input is IPA: fed Brazilian
Portuguese phonemes from espeak-ng, the ``jm_kumo`` voice speaks Portuguese that Whisper
transcribes back at WER 0–0.12. espeak-ng's own voice is the fallback (robotic, instant).
The onnxruntime session is built here because the package's loader needs pyopenjtalk.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import wave

import numpy as np
import soxr

from ..core.audio_format import UPSTREAM_RATE as RATE
from .models import KokoroFiles, ModelError

_MAX_TOKENS = 500
_PUNCTUATION = re.compile(r"\s*([,.!?;:…])\s*")
_IPA_FIXES = str.maketrans({"æ": "ɐ"})  # espeak's pt-br /æ/ is not in Kokoro's vocabulary; ɐ is close


def _espeak(args: list[str], text: str) -> bytes:
    try:
        return subprocess.run(["espeak-ng", "-v", "pt-br", *args], input=text.encode("utf-8"),
                              capture_output=True, check=True, timeout=10).stdout
    except FileNotFoundError:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)") from None


def phonemize(text: str) -> str:
    """pt-BR IPA for ``text``, keeping its punctuation (espeak drops it; Kokoro pauses on it)."""
    pieces = _PUNCTUATION.split(text)
    out = []
    for index, piece in enumerate(pieces):
        if index % 2:  # a captured punctuation mark
            out.append(piece + " ")
        elif piece.strip():
            ipa = _espeak(["-q", "--ipa"], piece).decode("utf-8")
            out.append(" ".join(ipa.split()).translate(_IPA_FIXES))
    return "".join(out).strip()


class KokoroVoice:
    """Kokoro-82M on onnxruntime; used from one worker thread only."""

    def __init__(self, files: KokoroFiles, default_voice: str, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Idle ORT threads would otherwise spin for a while after each operator, taking the core
        # the gateway's media pacing or the LLM needs; measured: same wall time without spinning.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(str(files.model), sess_options=options,
                                             providers=["CPUExecutionProvider"])
        self._token_input = next(i.name for i in self._session.get_inputs() if i.name in ("tokens", "input_ids"))
        self._vocab: dict[str, int] = json.loads(files.vocab.read_text("utf-8"))["vocab"]
        with np.load(files.voices) as archive:
            self._styles = {name: np.asarray(archive[name], np.float32) for name in archive.files}
        if default_voice not in self._styles:
            raise ModelError(f"ENGINE_KOKORO_VOICE must be one of {sorted(self._styles)}, not {default_voice!r}")
        self.default_voice = default_voice

    @property
    def voices(self) -> list[str]:
        return sorted(self._styles)

    def synthesize(self, text: str, voice: str | None = None, speed: float = 1.0) -> np.ndarray:
        """int16 audio at 24 kHz; blocking. ``voice`` may be any of :attr:`voices`; other names
        (OpenAI's "alloy", "marin"…) get the default voice."""
        return _trim(self.synthesize_raw(text, voice, speed))

    def synthesize_raw(self, text: str, voice: str | None = None, speed: float = 1.0) -> np.ndarray:
        """What the graph made, padding silence included (what synthesis cost is paid for)."""
        tokens = [self._vocab[c] for c in phonemize(text) if c in self._vocab][:_MAX_TOKENS]
        if not tokens:
            return np.zeros(0, np.int16)
        styles = self._styles.get(voice or "", self._styles[self.default_voice])
        style = styles[min(len(tokens), len(styles)) - 1].reshape(1, 256)
        audio = self._session.run(None, {self._token_input: np.array([[0, *tokens, 0]], np.int64), "style": style,
                                         "speed": np.array([speed], np.float32)})[0]
        return (np.clip(np.asarray(audio, np.float32).ravel(), -1, 1) * 32767).astype(np.int16)


class EspeakVoice:
    """espeak-ng's own pt-BR voice: robotic but instant, for when Kokoro is not installed."""

    default_voice = "espeak-pt-br"
    voices = [default_voice]

    def synthesize(self, text: str, voice: str | None = None, speed: float = 1.0) -> np.ndarray:
        data = _espeak(["--stdout", "-s", str(int(165 * speed))], text)
        with wave.open(io.BytesIO(data)) as wav:
            rate = wav.getframerate()
            pcm = np.frombuffer(wav.readframes(wav.getnframes()), np.int16)
        return soxr.resample(pcm, rate, RATE).astype(np.int16)


def _trim(pcm: np.ndarray, threshold: int = 300, pad: int = int(0.03 * RATE)) -> np.ndarray:
    """Cut the model's leading/trailing near-silence so consecutive pieces don't drag."""
    loud = np.flatnonzero(np.abs(pcm) > threshold)
    if not len(loud):
        return pcm
    return pcm[max(0, loud[0] - pad):loud[-1] + pad]
