"""Kokoro's real-time factor on this machine, alone and while the LLM decodes (the real contention).

    python bench/engine_tts_rtf.py [--llm qwen2.5-1.5b qwen2.5-0.5b] [--rounds 3]

RTF = seconds of synthesis per second of audio (< 1: faster than it plays). For each LLM and
thread split it synthesizes the same pt-BR pieces (a word, a clause, a sentence) while the LLM
decodes in another thread, and reports the TTS's RTF and the LLM's tokens/s side by side:

- ``tts alone``: the LLM idle (what the first piece of a reply gets: CpuPriority pauses the LLM);
- ``tts 2 + llm 2``: both on all cores at once (oversubscribed);
- ``tts 2 + llm 1``, ``tts 1 + llm 1``: the engine's "alongside" split (the LLM drops to one thread).

Plus the LLM alone (decode and prompt tokens/s), and espeak-ng's own voice as the instant fallback.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.engine.models import LLMS, default_cache_dir, installed, materialize, packaged_kokoro  # noqa: E402
from gateway.engine.prompt import render  # noqa: E402
from gateway.engine.tts import EspeakVoice, KokoroVoice  # noqa: E402

PIECES = ("Olá!", "A capital do Brasil", "A capital do Brasil é Brasília, no centro do país.")
PROMPT = [{"role": "system", "content": "Você é um assistente de voz. Responda em português."},
          {"role": "user", "content": "Conte uma história longa sobre o Brasil."}]


def synthesis_rtf(voice: KokoroVoice | EspeakVoice, rounds: int) -> dict[str, float]:
    out = {}
    for text in PIECES:
        ratios = []
        for _ in range(rounds):
            started = time.perf_counter()
            pcm = voice.synthesize(text)
            ratios.append((time.perf_counter() - started) / (len(pcm) / 24000))
        out[text] = statistics.median(ratios)
    return out


class Decoder:
    """The LLM decoding continuously on its own thread (as during a long reply)."""

    def __init__(self, llm: object, threads: int) -> None:
        self._llm = llm
        self._threads = threads
        self._stop = threading.Event()
        self.tokens = 0
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        import llama_cpp

        llm = self._llm
        llama_cpp.llama_set_n_threads(llm.ctx, self._threads, self._threads)  # type: ignore[attr-defined]
        prompt = llm.tokenize(render(PROMPT).encode(), add_bos=False, special=True)  # type: ignore[attr-defined]
        while not self._stop.is_set():
            for count, _ in enumerate(llm.generate(prompt, temp=0.0, reset=True)):  # type: ignore[attr-defined]
                self.tokens += 1
                if self._stop.is_set() or count > 200:
                    break

    def __enter__(self) -> Decoder:
        self._thread.start()
        time.sleep(1.0)
        self.started, self.tokens = time.monotonic(), 0
        return self

    def __exit__(self, *_: object) -> None:
        self.rate = self.tokens / (time.monotonic() - self.started)
        self._stop.set()
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--llm", nargs="+", default=[name for name, model in LLMS.items() if installed(model)])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from llama_cpp import Llama

    cache = default_cache_dir()
    voices = {threads: KokoroVoice(packaged_kokoro(cache), "jm_kumo", threads) for threads in (1, 2)}
    for voice in voices.values():
        voice.synthesize(PIECES[-1])
    rows: list[tuple[str, dict[str, float], float | None]] = [
        ("espeak-ng voice", synthesis_rtf(EspeakVoice(), args.rounds), None),
        ("kokoro, 2 threads, alone", synthesis_rtf(voices[2], args.rounds), None),
        ("kokoro, 1 thread, alone", synthesis_rtf(voices[1], args.rounds), None)]
    for name in args.llm:
        llm = Llama(model_path=str(materialize(LLMS[name], cache) / "model.gguf"), n_ctx=2048, n_threads=2,
                    n_threads_batch=2, verbose=False)
        prompt = llm.tokenize(render(PROMPT).encode(), add_bos=False, special=True)
        llm.reset()
        started = time.perf_counter()
        llm.eval(prompt)
        prompt_rate = len(prompt) / (time.perf_counter() - started)
        with Decoder(llm, 2) as alone:
            time.sleep(4)
        print(f"{name}: prompt {prompt_rate:.0f} tokens/s, decoding alone {alone.rate:.1f} tokens/s (2 threads)")
        for tts_threads, llm_threads in ((2, 2), (2, 1), (1, 1)):
            with Decoder(llm, llm_threads) as decoder:
                rtf = synthesis_rtf(voices[tts_threads], args.rounds)
            rows.append((f"kokoro {tts_threads} + {name} {llm_threads} decoding", rtf, decoder.rate))
        del llm
    print("\n| TTS (threads) while … | " + " | ".join(f"RTF “{p}”" for p in PIECES) + " | LLM tokens/s meanwhile |")
    print("|---|" + "---|" * (len(PIECES) + 1))
    for label, rtf, rate in rows:
        print(f"| {label} | " + " | ".join(f"{rtf[p]:.2f}" for p in PIECES) + f" | {'-' if rate is None else f'{rate:.1f}'} |")


if __name__ == "__main__":
    main()
