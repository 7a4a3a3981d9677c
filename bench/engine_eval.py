"""Answer quality of the offline engine on spoken pt-BR questions, per engine configuration.

    python bench/engine_eval.py [--llm qwen2.5-1.5b qwen2.5-0.5b] [--voice espeak|kokoro] [--limit N]

Each question of :data:`QUESTIONS` (a fact with one right answer) is synthesized once into
``--cache`` (Kokoro's ``jm_kumo`` by default: of the voices at hand it is the one Whisper base
transcribes best, WER ~25 % against ~75 % for espeak-ng's pt-BR voice, so the LLM's answers are
what is measured; ``--voice espeak`` for an independent voice), then asked aloud, in a fresh
session with the "fast" VAD preset, of an engine started with each ``--llm``. Scores per
configuration:

- STT: word error rate of Whisper's transcript against the question's text;
- fact: the answer (what the engine spoke, its transcript) contains an expected fact;
- Portuguese: the answer's words are Portuguese rather than Spanish or English;
- brevity: words per answer, and the share within 40 words (two or three short sentences);
- latency: end of speech → first answer audio (median), from the same turns.

The table is printed in Markdown (README-ready) and written to ``--json`` if given.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import time
import unicodedata
import urllib.request
import wave
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.config import VAD_PRESETS  # noqa: E402
from tests.engine.client import EngineClient, silence  # noqa: E402

# (question, expected facts: any one of them, compared without accents or case)
QUESTIONS: list[tuple[str, tuple[str, ...]]] = [
    ("Qual é a capital do Brasil?", ("brasilia",)),
    ("Quem escreveu Dom Casmurro?", ("machado de assis", "machado")),
    ("Quanto é sete vezes oito?", ("56", "cinquenta e seis")),
    ("Qual é o maior planeta do sistema solar?", ("jupiter",)),
    ("Em que continente fica o Egito?", ("africa",)),
    ("Quantos dias tem um ano bissexto?", ("366", "trezentos e sessenta e seis")),
    ("Qual é o rio mais longo do Brasil?", ("amazonas",)),
    ("Qual é a capital da Argentina?", ("buenos aires",)),
    ("Quem pintou a Mona Lisa?", ("leonardo", "da vinci")),
    ("Qual é o maior oceano do mundo?", ("pacifico",)),
    ("Em que ano o Brasil ficou independente?", ("1822", "mil oitocentos e vinte e dois")),
    ("Quantas horas tem um dia?", ("24", "vinte e quatro")),
    ("Qual é a moeda do Brasil?", ("real", "reais")),
    ("Qual é o planeta mais próximo do Sol?", ("mercurio",)),
    ("Qual é a capital de Portugal?", ("lisboa",)),
    ("Quem foi o primeiro homem a pisar na Lua?", ("armstrong",)),
    ("Qual é o maior país da América do Sul?", ("brasil",)),
    ("Quanto é cem dividido por quatro?", ("25", "vinte e cinco")),
    ("Qual é a língua oficial do Brasil?", ("portugues",)),
    ("Quantos minutos tem uma hora?", ("60", "sessenta")),
    ("Qual animal é conhecido como o rei da selva?", ("leao",)),
    ("Qual é a montanha mais alta do mundo?", ("everest",)),
    ("Quantas patas tem uma aranha?", ("8", "oito")),
    ("Qual é a capital da França?", ("paris",)),
    ("Qual gás as plantas absorvem do ar?", ("carbono", "co2", "dioxido", "gas carbonico")),
]

_PT = set("não é você são está isso também muito uma um do da dos das que para com por ele ela nós "
          "foi tem mais como seu sua ao aos à às então brasil".split())
_ES = set("es el los las está qué y pero muy también usted son una del al por fue tiene".split())
_EN = set("the is and of to in it that you are was for with this has".split())


def normalize(text: str) -> str:
    """Lower case, no accents, no punctuation: how answers are matched."""
    text = unicodedata.normalize("NFKD", text.lower())
    text = "".join(c for c in text if not unicodedata.combining(c))
    return " ".join(re.sub(r"[^\w\s]", " ", text).split())


def word_error_rate(reference: str, hypothesis: str) -> float:
    ref, hyp = normalize(reference).split(), normalize(hypothesis).split()
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        previous, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (r != h))
    return row[len(hyp)] / max(1, len(ref))


def language(text: str) -> str:
    words = text.lower().split()
    scores = {name: sum(w.strip(".,!?;:") in vocabulary for w in words)
              for name, vocabulary in (("pt", _PT), ("es", _ES), ("en", _EN))}
    return max(scores, key=lambda name: (scores[name], name == "pt"))


def has_fact(answer: str, facts: tuple[str, ...]) -> bool:
    spoken = f" {normalize(answer)} "
    return any(f" {fact} " in spoken for fact in facts)


def synthesize(text: str, voice: str, cache: Path) -> np.ndarray:
    """24 kHz int16 speech of ``text``, made once and kept in ``cache``."""
    path = cache / f"{voice}-{hashlib.sha256(text.encode()).hexdigest()[:16]}.wav"
    if not path.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        if voice == "espeak":
            data = subprocess.run(["espeak-ng", "-v", "pt-br", "-s", "160", "--stdout", text], capture_output=True,
                                  check=True).stdout
            with wave.open(io.BytesIO(data)) as source:
                pcm = np.frombuffer(source.readframes(source.getnframes()), np.int16)
                rate = source.getframerate()
            import soxr

            pcm = soxr.resample(pcm, rate, 24000).astype(np.int16)
        else:
            from gateway.engine.models import default_cache_dir, packaged_kokoro
            from gateway.engine.tts import KokoroVoice

            pcm = KokoroVoice(packaged_kokoro(default_cache_dir()), "jm_kumo", 2).synthesize(text)
        with wave.open(str(path), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(24000)
            out.writeframes(pcm.tobytes())
    with wave.open(str(path)) as stored:
        return np.frombuffer(stored.readframes(stored.getnframes()), np.int16)


async def ask(port: int, key: str, question: np.ndarray) -> dict[str, Any]:
    client = await EngineClient.open(f"ws://127.0.0.1:{port}/v1/realtime", key)
    try:
        await client.wait_for("session.created")
        await client.send({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {
            "turn_detection": VAD_PRESETS["fast"].to_session(),
            "transcription": {"model": "whisper-1", "language": "pt"}}}}})
        await client.wait_for("session.updated")
        await client.paced(silence(0.4))
        end_of_speech = await client.paced(question)
        feeder = asyncio.create_task(client.paced(silence(40)))
        try:
            heard = await client.wait_for("conversation.item.input_audio_transcription.completed", timeout=60)
            first = await client.wait_for("response.output_audio.delta", timeout=90)
            try:
                done = await client.wait_for("response.done", timeout=120)
            except AssertionError:  # a runaway reply: scored on what it said so far
                await client.send({"type": "response.cancel"})
                done = await client.wait_for("response.done", timeout=20)
        finally:
            feeder.cancel()
            await asyncio.gather(feeder, return_exceptions=True)
        output = done["response"]["output"]
        answer = output[0]["content"][0].get("transcript", "") if output else ""
        return {"heard": heard["transcript"], "answer": answer,
                "first_audio_ms": (client.arrivals[client.events.index(first)] - end_of_speech) * 1000}
    finally:
        await client.close()


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the engine exited with {process.returncode}")
        try:
            if urllib.request.urlopen(url, timeout=1).status == 200:
                return
        except OSError:
            time.sleep(0.3)
    raise SystemExit("the engine did not become ready")


async def evaluate(llm: str, args: argparse.Namespace, audio: list[np.ndarray]) -> dict[str, Any]:
    key = secrets.token_urlsafe(24)
    log = Path(f"/tmp/engine_eval_{llm}.log")
    with log.open("w") as out:
        engine = subprocess.Popen([sys.executable, "-m", "gateway.engine", "--port", str(args.port), "--llm", llm,
                                   *args.engine_arg], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                  env={**os.environ, "ENGINE_API_KEY": key, "HF_HUB_OFFLINE": "1"})
    try:
        wait_healthy(f"http://127.0.0.1:{args.port}/healthz", engine, 900)
        rows = []
        for (question, facts), pcm in zip(QUESTIONS[:args.limit], audio, strict=True):
            result = await ask(args.port, key, pcm)
            result.update(question=question, wer=word_error_rate(question, result["heard"]),
                          fact=has_fact(result["answer"], facts), language=language(result["answer"]),
                          words=len(result["answer"].split()))
            rows.append(result)
            print(f"  [{llm}] {'✓' if result['fact'] else '✗'} {question} → heard {result['heard']!r}, "
                  f"answered {result['answer']!r} ({result['first_audio_ms']:.0f} ms)", flush=True)
    finally:
        engine.terminate()
        engine.wait(10)
    count = len(rows)
    return {"llm": llm, "rows": rows, "questions": count,
            "wer": sum(r["wer"] for r in rows) / count,
            "fact": sum(r["fact"] for r in rows) / count,
            "portuguese": sum(r["language"] == "pt" for r in rows) / count,
            "words_p50": statistics.median(r["words"] for r in rows),
            "brief": sum(r["words"] <= 40 for r in rows) / count,
            "first_audio_p50_ms": statistics.median(r["first_audio_ms"] for r in rows)}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--llm", nargs="+", default=["qwen2.5-1.5b", "qwen2.5-0.5b"])
    parser.add_argument("--voice", choices=("espeak", "kokoro"), default="kokoro")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "realtime-gateway" / "eval")
    parser.add_argument("--limit", type=int, default=len(QUESTIONS))
    parser.add_argument("--port", type=int, default=8797)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--engine-arg", action="append", default=[], help="extra engine flag")
    args = parser.parse_args()
    audio = [synthesize(question, args.voice, args.cache) for question, _ in QUESTIONS[:args.limit]]
    results = [await evaluate(llm, args, audio) for llm in args.llm]
    print(f"\n{len(audio)} spoken pt-BR questions ({args.voice} voice), fast VAD preset, one fresh session each:\n")
    print("| LLM | STT WER | answer has the fact | answer in Portuguese | words p50 (≤ 40) | first audio p50 |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['llm']} | {r['wer'] * 100:.0f} % | {r['fact'] * 100:.0f} % | {r['portuguese'] * 100:.0f} % | "
              f"{r['words_p50']:.0f} ({r['brief'] * 100:.0f} %) | {r['first_audio_p50_ms']:.0f} ms |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    asyncio.run(main())
