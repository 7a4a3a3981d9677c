"""Reply generation with a small instruction-tuned LLM (llama.cpp, GGUF), streamed token by token.

The prompt arrives as text (``prompt.py`` renders it), so every turn's prompt extends the one
before: llama.cpp keeps the tokens it evaluated last and only evaluates what differs. On this
machine class evaluating the prompt is the slow part (a 1.5B model reads ~25–40 tokens/s on two
cores, against ~10 tokens/s written), so the engine evaluates ahead of time whatever it can:
the system prompt at start, a finished turn's history right after it ends
(:meth:`ReplyGenerator.prefill`), a user turn from its early transcript before the turn is over.
Prompt evaluation goes in small chunks so a stop or a more urgent model job never waits long.
"""

from __future__ import annotations

import codecs
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .model_threads import CpuPriority

# Spoken replies: the TTS reads every character, so the model is told to avoid what can't be said.
SPOKEN_STYLE = (
    "Suas respostas serão faladas em voz alta: responda sempre em português do Brasil, em frases "
    "curtas, sem listas, sem markdown, sem emojis e sem símbolos."
)
PREFILL_CHUNK = 16  # tokens evaluated between two looks at ``stop`` and the CPU priority


@dataclass
class Generated:
    text: str  # what the model wrote, as it wrote it
    tokens: int
    reused: int  # prompt tokens found in the cache
    evaluated: int  # prompt tokens evaluated for this call
    stopped: bool  # ended by ``stop`` rather than by the model or ``max_tokens``


class ReplyGenerator:
    """One llama.cpp context for every session of the engine; used from one worker thread only."""

    def __init__(self, model_path: Path, threads: int, context_tokens: int) -> None:
        from llama_cpp import Llama

        self._llm = Llama(model_path=str(model_path), n_ctx=context_tokens, n_threads=threads,
                          n_threads_batch=threads, n_batch=256, verbose=False)
        self.context_tokens = context_tokens
        self.full_threads = self.threads = threads
        self._stops = {self._llm.token_eos(), *self._llm.tokenize(b"<|im_end|><|endoftext|>", add_bos=False,
                                                                  special=True)}

    def tokenize(self, prompt: str) -> list[int]:
        return self._llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)

    def cached(self, tokens: list[int]) -> int:
        """How many leading ``tokens`` the context already holds."""
        held = self._llm.input_ids[:self._llm.n_tokens]
        count = 0
        for a, b in zip(held, tokens, strict=False):
            if a != b:
                break
            count += 1
        return count

    def set_threads(self, threads: int) -> None:
        """Compute on ``threads`` threads from the next token on (the TTS may be using a core)."""
        import llama_cpp

        if threads != self.threads:
            llama_cpp.llama_set_n_threads(self._llm.ctx, threads, threads)
            self.threads = threads

    def _yield_cpu(self, priority: CpuPriority | None, stop: threading.Event) -> None:
        """Between two steps: wait while an urgent job runs; share the cores with a job alongside."""
        if priority is None:
            return
        priority.wait_for_urgent(stop)
        self.set_threads(max(1, self.full_threads - 1) if priority.sharing else self.full_threads)

    def prefill(self, tokens: list[int], stop: threading.Event | None = None,
                priority: CpuPriority | None = None) -> int:
        """Evaluate ``tokens`` into the context (keeping the cached prefix); returns how many were
        evaluated. Blocking; stops between chunks once ``stop`` is set."""
        llm = self._llm
        tokens = tokens[:self.context_tokens - 1]
        reuse = self.cached(tokens)
        if reuse < llm.n_tokens:
            llm.n_tokens = reuse  # eval() drops the cache from here on
        evaluated = 0
        stop = stop or threading.Event()
        for start in range(reuse, len(tokens), PREFILL_CHUNK):
            self._yield_cpu(priority, stop)
            if stop.is_set():
                break
            chunk = tokens[start:start + PREFILL_CHUNK]
            llm.eval(chunk)
            evaluated += len(chunk)
        return evaluated

    def generate(self, prompt: list[int], max_tokens: int, on_text: Callable[[str], None], stop: threading.Event,
                 priority: CpuPriority | None = None) -> Generated:
        """Blocking. Greedy decoding of a reply to ``prompt`` (tokens); ``on_text`` gets each
        decoded piece. Stops within one token once ``stop`` is set, and lets ``priority``'s urgent
        jobs (the TTS, another session's STT) have the CPU between tokens."""
        if len(prompt) + max_tokens >= self.context_tokens:
            prompt = prompt[-(self.context_tokens - max_tokens - 1):]
        reused = self.cached(prompt)
        evaluated = self.prefill(prompt[:-1], stop, priority) if len(prompt) > 1 else 0
        result = Generated("", 0, reused, evaluated + 1, stop.is_set())
        if stop.is_set():
            return result
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        text: list[str] = []
        # Greedy: with sampling, the 1.5B model got simple facts wrong (capital → São Paulo).
        tokens = self._llm.generate(prompt, temp=0.0, repeat_penalty=1.1, reset=True)
        try:
            for token in tokens:
                if token in self._stops:
                    break
                piece = decoder.decode(self._llm.detokenize([token]))
                result.tokens += 1
                if piece:
                    text.append(piece)
                    on_text(piece)
                if result.tokens >= max_tokens:
                    break
                self._yield_cpu(priority, stop)
                if stop.is_set():
                    result.stopped = True
                    break
        finally:
            tokens.close()
        result.text = "".join(text)
        return result
