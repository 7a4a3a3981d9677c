"""Reply generation with a small instruction-tuned LLM (llama.cpp, GGUF), streamed token by token."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Spoken replies: the TTS reads every character, so the model is told to avoid what can't be said.
SPOKEN_STYLE = (
    "Suas respostas serão faladas em voz alta: responda sempre em português do Brasil, em frases "
    "curtas, sem listas, sem markdown, sem emojis e sem símbolos."
)


class ReplyGenerator:
    """One llama.cpp context shared by all sessions; generations take turns behind a lock."""

    def __init__(self, model_path: Path, threads: int, context_tokens: int) -> None:
        from llama_cpp import Llama

        self._llm = Llama(model_path=str(model_path), n_ctx=context_tokens, n_threads=threads,
                          n_threads_batch=threads, n_batch=256, verbose=False)
        self._lock = threading.Lock()
        self.context_tokens = context_tokens

    def count_tokens(self, text: str) -> int:
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def generate(self, messages: list[dict[str, Any]], max_tokens: int, on_text: Callable[[str], None],
                 stop: threading.Event, proceed: threading.Event | None = None) -> None:
        """Blocking; call from a worker thread. Stops within one token once ``stop`` is set, and
        waits between tokens while ``proceed`` is clear (so the first TTS piece gets the CPU)."""
        with self._lock:
            if stop.is_set():
                return
            # Greedy decoding: with sampling, the 1.5B model got simple facts wrong (capital → São Paulo).
            stream = self._llm.create_chat_completion(messages=messages, max_tokens=max_tokens, temperature=0.0,
                                                      repeat_penalty=1.1, stream=True)
            try:
                for chunk in stream:
                    if proceed is not None:
                        proceed.wait()
                    if stop.is_set():
                        break
                    text = chunk["choices"][0]["delta"].get("content")
                    if text:
                        on_text(text)
            finally:
                stream.close()  # type: ignore[attr-defined]
