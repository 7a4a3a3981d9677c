"""Speech to text for committed user turns: Whisper on CTranslate2 (faster-whisper's model, int8).

A spoken turn is a few seconds long, but faster-whisper pads every input to Whisper's 30 s
window; the encoder then costs ~670 ms on this machine class whatever the turn's length. The
encoder accepts shorter inputs, so turns are padded only to the next second (at least
``MIN_WINDOW_S``, below which Whisper starts looping) and decoded with a token budget scaled to
the audio: ~150–250 ms per turn, same transcripts on our pt-BR test set.

Whisper is also given a short generic Portuguese context as its previous text (the
``initial_prompt`` of faster-whisper; a session's ``audio.input.transcription.prompt`` replaces
it): it tells the decoder it hears conversational Brazilian Portuguese, which measured WER
19 → 11 % on the eval set's 25 questions and 43 → 31 % on the latency bench's questions (another
voice), and fewer repeated phrases. It names no topic: a context that said "Brasil" made Whisper
hear "Brasil" where the speaker said "Egito".
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soxr

if TYPE_CHECKING:
    import ctranslate2

from ..core.audio_format import UPSTREAM_RATE

STT_RATE = 16000
FRAMES_PER_SECOND = 100  # Whisper's mel hop is 10 ms
MIN_WINDOW_S = 5
MAX_WINDOW_FRAMES = 3000  # 30 s, the model's context
TOKENS_PER_SECOND = 8  # generous for speech; caps runaway repetition on noise
DEFAULT_CONTEXT = "Oi! Eu tenho uma dúvida. Você sabe me dizer?"  # Portuguese turns; none for the others


class Transcriber:
    """One CTranslate2 Whisper for every session of the engine; used from one worker thread only."""

    def __init__(self, model_dir: Path, threads: int, context: str = DEFAULT_CONTEXT) -> None:
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer

        self._whisper = WhisperModel(str(model_dir), device="cpu", compute_type="int8", cpu_threads=threads,
                                     num_workers=1, local_files_only=True)
        self._tokenizer_class = Tokenizer
        self._tokenizers: dict[str, Tokenizer] = {}
        self._context = {"pt": "" if context.strip().lower() == "none" else context.strip()}

    def _features(self, pcm24: np.ndarray) -> ctranslate2.StorageView:
        """Log-mel features padded to the next whole second (≥ MIN_WINDOW_S), not to 30 s."""
        import ctranslate2

        audio = soxr.resample(pcm24.astype(np.float32) / 32768.0, UPSTREAM_RATE, STT_RATE, quality="HQ")
        features = self._whisper.feature_extractor(audio)
        frames = features.shape[1]
        window = min(MAX_WINDOW_FRAMES, max(MIN_WINDOW_S * FRAMES_PER_SECOND,
                                            -(-(frames + 50) // FRAMES_PER_SECOND) * FRAMES_PER_SECOND))
        features = features[:, :window]
        if features.shape[1] < window:
            features = np.pad(features, ((0, 0), (0, window - features.shape[1])))
        return ctranslate2.StorageView.from_array(np.ascontiguousarray(features[None], np.float32))

    def detect_language(self, pcm24: np.ndarray) -> str:
        """The language Whisper hears (e.g. "pt"), used to check what the TTS speaks."""
        results = self._whisper.model.detect_language(self._features(pcm24))
        return results[0][0][0].strip("<|>")

    def transcribe(self, pcm24: np.ndarray, language: str | None, prompt: str | None = None) -> str:
        """Blocking; call from a worker thread. ``language`` defaults to Portuguese: Whisper's own
        detection picked Spanish or Romanian for short Brazilian Portuguese turns. ``prompt``:
        text Whisper takes as what came before (None: the engine's generic context for the language)."""
        seconds = len(pcm24) / UPSTREAM_RATE
        if seconds < 0.1:
            return ""
        language = (language or "pt").split("-")[0].lower()
        tokenizer = self._tokenizers.get(language)
        if tokenizer is None:
            tokenizer = self._tokenizers[language] = self._tokenizer_class(
                self._whisper.hf_tokenizer, True, task="transcribe", language=language)
        context = self._context.get(language, "") if prompt is None else prompt.strip()
        previous = [tokenizer.sot_prev, *tokenizer.encode(" " + context)[-223:]] if context else []
        prompt_tokens = [*previous, *tokenizer.sot_sequence, tokenizer.no_timestamps]
        batch = self._features(pcm24)
        result = self._whisper.model.generate(
            batch, [prompt_tokens], beam_size=1, suppress_blank=True, suppress_tokens=[-1],
            max_length=len(prompt_tokens) + int(seconds * TOKENS_PER_SECOND) + 8)
        tokens = [t for t in result[0].sequences_ids[0] if t < tokenizer.eot]
        return tokenizer.decode(tokens).strip()
