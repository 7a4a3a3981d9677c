"""The engine's loaded models, and their warm-up before the engine says it is ready.

A model's first run is slow: ONNX Runtime sizes its memory arenas, CTranslate2 its buffers for
a window length, llama.cpp touches its mapped weights and evaluates the system prompt. Run
during a user's first turn, that made the first answer ~2.5× slower than the tenth. So before
``/healthz`` says ready, each model does the work of a real turn once — Kokoro speaks a short
and a long sentence, Whisper transcribes one, the LLM answers a question — and the LLM's
cache is left holding the usual system prompt, as the first session will send it.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import EngineConfig
from .llm import ReplyGenerator
from .models import ModelError, choose_models
from .prompt import render
from .speech_plan import SynthesisCost
from .stt import Transcriber
from .tts import EspeakVoice, KokoroVoice
from .vad import SpeechProbability

logger = logging.getLogger(__name__)

WARM_UP_SENTENCES = ("Olá!", "A capital do Brasil é Brasília, uma cidade planejada no centro do país.")


def next_turn_prefix(messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]] = ()) -> str:
    """The prompt a next user turn will start with: everything up to where its text goes."""
    marker = "\x00"
    prompt = render([*messages, {"role": "user", "content": marker}], tools)
    return prompt[:prompt.index(marker)]


@dataclass
class Models:
    transcriber: Transcriber
    generator: ReplyGenerator
    voice: KokoroVoice | EspeakVoice
    cost: SynthesisCost  # what a piece costs the TTS here, learned from every piece spoken

    @classmethod
    def load(cls, config: EngineConfig) -> Models:
        """Blocking (seconds; minutes the first time, when packaged files are assembled)."""
        started = time.monotonic()
        if shutil.which("espeak-ng") is None:
            raise ModelError("espeak-ng is not installed: it gives the TTS its pt-BR phonemes "
                             "(apt-get install espeak-ng, or run scripts/setup_engine.sh)")
        choice = choose_models(config)
        transcriber = Transcriber(choice.whisper_dir, config.threads, config.stt_context)
        generator = ReplyGenerator(choice.llm_file, config.threads, config.context_tokens)
        voice: KokoroVoice | EspeakVoice = (
            KokoroVoice(choice.kokoro, config.kokoro_voice, config.threads) if choice.kokoro else EspeakVoice())
        logger.info("models loaded in %.1f s: stt %s, llm %s, tts %s (voice %s), %d threads",
                    time.monotonic() - started, choice.whisper_dir, choice.llm_file,
                    choice.kokoro.model if choice.kokoro else "espeak-ng", voice.default_voice, config.threads)
        return cls(transcriber, generator, voice, SynthesisCost())

    def warm_up(self, system_prompt: str) -> dict[str, float]:
        """Blocking: one real turn's work for every model; returns each stage's seconds."""
        seconds: dict[str, float] = {}
        started = time.perf_counter()
        SpeechProbability().push(np.zeros(4800, np.int16))  # the VAD runtime's first session
        seconds["vad"] = time.perf_counter() - started
        speech = np.zeros(0, np.int16)
        for text in WARM_UP_SENTENCES * 2:  # the second round is what a warm model costs
            started = time.perf_counter()
            speech = self.voice.synthesize(text)
            took = time.perf_counter() - started
            self.cost.observe(text, len(speech) / 24000, took)
            seconds[f"tts {len(text)} chars"] = took
        for _ in range(2):
            started = time.perf_counter()
            self.transcriber.transcribe(speech, "pt")
            seconds["stt"] = time.perf_counter() - started
        system = [{"role": "system", "content": system_prompt}]
        prompt = self.generator.tokenize(render([*system, {"role": "user", "content": "Qual é a capital do Brasil?"}]))
        started = time.perf_counter()
        self.generator.generate(prompt, 8, lambda _: None, threading.Event())
        seconds["llm"] = time.perf_counter() - started
        started = time.perf_counter()
        self.generator.prefill(self.generator.tokenize(next_turn_prefix(system)))
        seconds["llm system prompt"] = time.perf_counter() - started
        return {name: round(value, 3) for name, value in seconds.items()}
