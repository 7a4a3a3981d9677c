"""End of user speech → first reply audio with the offline engine, directly and through the gateway.

    python bench/engine_latency.py [--turns 10] [--mode direct|gateway|both] [--llm qwen2.5-1.5b]

Questions are synthesized once (Kokoro, pt-BR) and streamed in real time with the "fast" VAD
preset (silence 200 ms). The split comes from the engine's own timing log lines: VAD wait
(end of speech → speech_stopped), STT, LLM first piece, TTS first piece. Prints a table and the
engine's peak RSS. Direct mode talks to the engine's WebSocket; gateway mode is a real aiortc
peer calling the gateway, whose upstream is the same engine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.config import VAD_PRESETS  # noqa: E402
from gateway.resample import Upsampler  # noqa: E402
from tests.engine.client import EngineClient, silence  # noqa: E402

QUESTIONS = [
    "Qual é a capital do Brasil?", "Quem escreveu Dom Casmurro?", "Quanto é sete vezes oito?",
    "Me dá uma dica para dormir melhor.", "Qual é o maior planeta do sistema solar?",
    "Que horas são no Japão quando é meio-dia em Brasília?", "Como se faz um café coado?",
    "Qual é a cor do céu em um dia limpo?", "Me fala um nome bonito para um cachorro.",
    "Quantos dias tem um ano bissexto?", "O que é fotossíntese?", "Qual é o rio mais longo do Brasil?",
]
FAST = VAD_PRESETS["fast"]


def synthesize_questions(count: int) -> list[np.ndarray]:
    from gateway.engine.models import KOKORO_INT8, default_cache_dir, materialize
    from gateway.engine.tts import KokoroVoice

    voice = KokoroVoice(materialize(KOKORO_INT8, default_cache_dir()), "jm_kumo", 2)
    return [voice.synthesize(q) for q in (QUESTIONS * 3)[:count]]


def start_engine(port: int, llm: str, log: Path) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen([sys.executable, "-m", "gateway.engine", "--port", str(port), "--llm", llm],
                               stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    import urllib.request
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).status == 200:
                return process
        except OSError:
            time.sleep(0.5)
    raise SystemExit("engine did not start; see " + str(log))


def peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024


def timings(log: Path) -> tuple[list[dict], list[dict]]:
    lines = [json.loads(m.group(1)) for m in re.finditer(r"timing (\{.*\})", log.read_text())]
    return [t for t in lines if "stt_ms" in t], [t for t in lines if "response_id" in t]


async def direct_turns(port: int, questions: list[np.ndarray]) -> list[dict]:
    client = await EngineClient.open(f"ws://127.0.0.1:{port}/v1/realtime")
    await client.wait_for("session.created")
    await client.send({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {
        "turn_detection": FAST.to_session()}}}})
    await client.wait_for("session.updated")
    results = []
    for pcm in questions:
        mark = len(client.events)
        await client.append(silence(0.3), realtime=1)
        end_of_speech = await client.append(pcm, realtime=1)
        feeder = asyncio.create_task(client.append(silence(8), realtime=1))
        stopped = await client.wait_for("input_audio_buffer.speech_stopped", after=mark)
        first = await client.wait_for("response.output_audio.delta", after=mark, timeout=60)
        done = await client.wait_for("response.done", after=mark, timeout=90)
        results.append({
            "vad_wait_ms": (client.arrivals[client.events.index(stopped)] - end_of_speech) * 1000,
            "total_ms": (client.arrivals[client.events.index(first)] - end_of_speech) * 1000,
            "response_id": done["response"]["id"],
        })
        feeder.cancel()
        await asyncio.gather(feeder, return_exceptions=True)
    await client.close()
    return results


async def gateway_turns(port: int, engine_port: int, questions: list[np.ndarray]) -> list[dict]:
    from tests.peers import ClientPeer

    gateway = subprocess.Popen([sys.executable, "-m", "gateway", "--upstream", "local", "--engine-port",
                                str(engine_port), "--port", str(port), "--vad-preset", "fast", "--host", "127.0.0.1"],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await asyncio.sleep(3)
        peer = ClientPeer(f"http://127.0.0.1:{port}")
        await peer.connect()
        await peer.channel_open()
        await peer.wait_for("session.created", timeout=20)
        results = []
        for pcm in questions:
            mark = len(peer.events)
            end_of_speech = peer.mic.say(_to_48k(np.concatenate((silence(0.3), pcm))))
            stopped = await peer.wait_for("input_audio_buffer.speech_stopped", after=mark, timeout=30)
            started = await peer.wait_for("output_audio_buffer.started", after=mark, timeout=60)
            await peer.wait_for("output_audio_buffer.stopped", after=mark, timeout=90)
            first_heard = next((when for when, frame in peer.heard if when > end_of_speech
                                and np.abs(frame).max() > 500), None)
            results.append({"total_ms": (first_heard - end_of_speech) * 1000 if first_heard else float("nan"),
                            "response_id": started["response_id"], "stopped": stopped})
            await asyncio.sleep(0.5)
        await peer.close()
        return results
    finally:
        gateway.terminate()
        gateway.wait()


def _to_48k(pcm24: np.ndarray) -> np.ndarray:
    return Upsampler().process(pcm24)


def report(title: str, results: list[dict], responses: dict[str, dict], stts: list[dict]) -> None:
    def stat(values: list[float]) -> str:
        values = [v for v in values if v == v]
        if not values:
            return "-"
        return f"{statistics.median(values):.0f} / {np.percentile(values, 90):.0f}"

    rows = {
        "end of speech → first reply audio": [r["total_ms"] for r in results],
        "  VAD wait (200 ms silence)": [r.get("vad_wait_ms", float("nan")) for r in results],
        "  STT": [s["stt_ms"] for s in stts],
        "  LLM first piece": [responses.get(r["response_id"], {}).get("llm_first_piece_ms", float("nan"))
                              for r in results],
        "  TTS first piece (from response start)": [
            responses.get(r["response_id"], {}).get("tts_first_piece_ms", float("nan")) for r in results],
    }
    print(f"\n{title} — {len(results)} turns, median / p90 ms")
    for name, values in rows.items():
        print(f"| {name:<42} | {stat(values):>13} |")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--mode", choices=("direct", "gateway", "both"), default="both")
    parser.add_argument("--llm", default="qwen2.5-1.5b")
    parser.add_argument("--port", type=int, default=8799)
    args = parser.parse_args()
    questions = synthesize_questions(args.turns)
    log = Path("/tmp/engine_latency_engine.log")
    engine = start_engine(args.port, args.llm, log)
    try:
        if args.mode in ("direct", "both"):
            results = await direct_turns(args.port, questions)
            stts, responses = timings(log)
            report(f"direct to the engine ({args.llm})", results, {r["response_id"]: r for r in responses},
                   stts[-len(results):])
        if args.mode in ("gateway", "both"):
            results = await gateway_turns(args.port + 1, args.port, questions)
            stts, responses = timings(log)
            report(f"through the gateway, aiortc client ({args.llm})", results,
                   {r["response_id"]: r for r in responses}, stts[-len(results):])
        print(f"\nengine peak RSS: {peak_rss_mb(engine.pid):.0f} MB")
    finally:
        engine.terminate()
        engine.wait()


if __name__ == "__main__":
    asyncio.run(main())
