"""Reply generation with a small instruction-tuned LLM (llama.cpp, GGUF), streamed token by token."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .model_threads import CpuPriority

# Spoken replies: the TTS reads every character, so the model is told to avoid what can't be said.
SPOKEN_STYLE = (
    "Suas respostas serão faladas em voz alta: responda sempre em português do Brasil, em frases "
    "curtas, sem listas, sem markdown, sem emojis e sem símbolos."
)


class ReplyGenerator:
    """One llama.cpp context for every session of the engine; used from one worker thread only.

    llama.cpp keeps the previous prompt's tokens: a turn whose prompt starts like the last one
    (same instructions, same history) only evaluates what is new, which is why the usual system
    prompt is evaluated once at start-up.
    """

    def __init__(self, model_path: Path, threads: int, context_tokens: int) -> None:
        from llama_cpp import Llama

        self._llm = Llama(model_path=str(model_path), n_ctx=context_tokens, n_threads=threads,
                          n_threads_batch=threads, n_batch=256, verbose=False)
        self.context_tokens = context_tokens

    def generate(self, messages: list[dict[str, Any]], max_tokens: int, on_text: Callable[[str], None],
                 stop: threading.Event, priority: CpuPriority | None = None) -> None:
        """Blocking. Stops within one token once ``stop`` is set, and lets ``priority``' urgent jobs
        (the TTS, another session's STT) have the CPU between tokens."""
        if stop.is_set():
            return
        # Greedy decoding: with sampling, the 1.5B model got simple facts wrong (capital → São Paulo).
        # llama-cpp-python's stubs type messages and chunks as TypedDict unions; ours are plain dicts.
        stream: Any = self._llm.create_chat_completion(
            messages=messages, max_tokens=max_tokens, temperature=0.0, repeat_penalty=1.1,  # type: ignore[arg-type]
            stream=True)
        try:
            for chunk in stream:
                if priority is not None:
                    priority.wait_for_urgent(stop)
                if stop.is_set():
                    break
                text = chunk["choices"][0]["delta"].get("content")
                if text:
                    on_text(text)
        finally:
            stream.close()
