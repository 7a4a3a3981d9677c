"""The LLM's side of the first piece: a warm turn's prompt evaluation vs decoding, by threads.

    python bench/engine_llm_prompt.py [--llm qwen2.5-1.5b] [--rounds 3]

A turn after the first evaluates only its new tokens (the system prompt and history stay in
llama.cpp's cache: the engine's timing log shows ``prompt_reused`` growing turn by turn and
``prompt_evaluated`` 5-20). This measures what those tokens cost on this machine: a chunk of
N new tokens evaluated on top of a ~300-token cached prefix (N = 1 is one decoding step), with
1 and 2 threads, and with each ``n_batch`` the engine could use.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.engine.llm import SPOKEN_STYLE  # noqa: E402
from gateway.engine.models import LLMS, default_cache_dir, materialize  # noqa: E402
from gateway.engine.prompt import render  # noqa: E402

HISTORY = [{"role": "system", "content": "Você é um assistente de voz prestativo. " + SPOKEN_STYLE}]
for question, answer in (("Qual é a capital do Brasil?", "A capital do Brasil é Brasília."),
                         ("Quem escreveu Dom Casmurro?", "Dom Casmurro foi escrito por Machado de Assis."),
                         ("Quanto é sete vezes oito?", "Sete vezes oito é cinquenta e seis."),
                         ("Me dá uma dica para dormir melhor.", "Evite telas antes de dormir e mantenha um horário fixo.")):
    HISTORY += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
TURN = "Qual é o maior planeta do sistema solar?"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--llm", default="qwen2.5-1.5b")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chunks", type=int, nargs="+", default=[1, 4, 8, 16, 32])
    args = parser.parse_args()
    import llama_cpp
    from llama_cpp import Llama

    llm = Llama(model_path=str(materialize(LLMS[args.llm], default_cache_dir()) / "model.gguf"), n_ctx=4096,
                n_threads=2, n_threads_batch=2, n_batch=256, verbose=False)
    full = llm.tokenize(render([*HISTORY, {"role": "user", "content": TURN}]).encode(), add_bos=False, special=True)
    prefix = llm.tokenize(render(HISTORY).encode(), add_bos=False, special=True)
    new = full[len(prefix):]
    print(f"{args.llm}: cached prefix {len(prefix)} tokens; a typical new turn is {len(new)} tokens")
    llm.reset()
    llm.eval(prefix)
    print("| threads | " + " | ".join(f"{n} new tokens (ms, ms/token)" for n in args.chunks) + " | the turn's "
          f"{len(new)} tokens in chunks of 16 (ms) |")
    print("|---|" + "---|" * (len(args.chunks) + 1))
    for threads in (2, 1):
        llama_cpp.llama_set_n_threads(llm.ctx, threads, threads)
        cells = []
        for n in [*args.chunks, 0]:
            times = []
            for _ in range(args.rounds):
                llm.n_tokens = len(prefix)  # drop what the last round added, keep the cached prefix
                tokens = (new * 4)[:n] if n else new
                started = time.perf_counter()
                for start in range(0, len(tokens), 16 if not n else len(tokens)):
                    llm.eval(tokens[start:start + (16 if not n else len(tokens))])
                times.append(time.perf_counter() - started)
            ms = statistics.median(times) * 1000
            cells.append(f"{ms:.0f}, {ms / max(1, n):.0f}" if n else f"{ms:.0f}")
        print(f"| {threads} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
