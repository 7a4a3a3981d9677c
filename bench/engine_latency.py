"""End of user speech → first reply audio with the offline engine, directly and through the gateway.

    python bench/engine_latency.py [--turns 10] [--mode direct|gateway|both] [--llm qwen2.5-1.5b]
                                   [--vad-preset fast|default] [--root /other/checkout] [--json out.json]

Questions (pt-BR, synthesized once with Kokoro) are streamed in real time with a VAD preset of the
gateway ("fast" by default: 200 ms of silence ends a turn). "Direct" talks to the engine's
WebSocket; "gateway" is a real aiortc peer calling the gateway (its own process, upstream = the
engine), as a browser would. Each mode starts its own engine, so its first turn is the engine's
first call after start. The split comes from the engine's timing log (all from the end of the
turn, i.e. its commit): VAD wait (end of speech → speech_stopped at the client), STT (commit →
transcript), LLM first piece (LLM start → first speakable piece), TTS first chunk (that piece →
its audio).

Stutter: "in-reply silence" is the longest pause a listener hears inside a reply. Directly, it
is computed from when each audio delta arrived (played as it comes: a chunk that arrives after
the previous one finished playing leaves silence); through the gateway, from the audio the
client received (runs of quiet 20 ms frames between the reply's first and last sound, which
also counts pauses Kokoro speaks itself, e.g. at a full stop inside a piece).

Through the gateway it also checks that the media never stalls while the engine works: the
gateway counts outbound frames sent > 30 ms after the previous one (``gateway_outbound_gaps``
on /metrics), and the client records when each 20 ms frame arrives.

``--root`` runs another checkout's engine and gateway (e.g. a copy from before a change) with
this script's measurements, for before/after figures from one machine state.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.config import VAD_PRESETS  # noqa: E402
from gateway.media.resample import Upsampler  # noqa: E402
from tests.engine.client import EngineClient, longest_quiet, silence  # noqa: E402

QUESTIONS = [
    "Qual é a capital do Brasil?", "Quem escreveu Dom Casmurro?", "Quanto é sete vezes oito?",
    "Me dá uma dica para dormir melhor.", "Qual é o maior planeta do sistema solar?",
    "Em que continente fica o Egito?", "Como se faz um café coado?",
    "Qual é a cor do céu em um dia limpo?", "Me fala um nome bonito para um cachorro.",
    "Quantos dias tem um ano bissexto?", "O que é fotossíntese?", "Qual é o rio mais longo do Brasil?",
]


def synthesize_questions(count: int) -> list[np.ndarray]:
    cache = Path("/tmp/engine_latency_questions.npz")
    if cache.is_file():
        with np.load(cache) as stored:
            if len(stored.files) >= count:
                return [stored[f"q{i}"] for i in range(count)]
    from gateway.engine.models import default_cache_dir, packaged_kokoro
    from gateway.engine.tts import KokoroVoice

    voice = KokoroVoice(packaged_kokoro(default_cache_dir()), "jf_alpha", 2)
    questions = [voice.synthesize(q) for q in (QUESTIONS * 3)[:count]]
    np.savez(cache, **{f"q{i}": q for i, q in enumerate(questions)})
    return questions


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise SystemExit(f"{process.args} exited with {process.returncode}")
        try:
            if urllib.request.urlopen(url, timeout=1).status == 200:
                return time.monotonic() - started
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} not healthy after {timeout} s")


def peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks of 10 ms


def engine_timings(log: Path) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    lines = [json.loads(m.group(1)) for m in re.finditer(r"timing (\{.*\})", log.read_text())]
    return [t for t in lines if "stt_ms" in t], {t["response_id"]: t for t in lines if "response_id" in t}


async def direct_turns(port: int, key: str, preset: str, questions: list[np.ndarray]) -> list[dict[str, Any]]:
    client = await EngineClient.open(f"ws://127.0.0.1:{port}/v1/realtime", key)
    await client.wait_for("session.created")
    await client.send({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {
        "turn_detection": VAD_PRESETS[preset].to_session(), "transcription": {"model": "whisper-1", "language": "pt"}}}}})
    await client.wait_for("session.updated")
    results = []
    for pcm in questions:
        mark = len(client.events)
        await client.paced(silence(0.4))
        end_of_speech = await client.paced(pcm)
        feeder = asyncio.create_task(client.paced(silence(30)))
        try:
            stopped = await client.wait_for("input_audio_buffer.speech_stopped", after=mark)
            first = await client.wait_for("response.output_audio.delta", after=mark, timeout=60)
            try:
                done = await client.wait_for("response.done", after=mark, timeout=90)
            except AssertionError:  # a runaway reply: noted, cut, and the next turn goes on
                await client.send({"type": "response.cancel"})
                done = await client.wait_for("response.done", after=mark, timeout=20)
        finally:
            feeder.cancel()
            await asyncio.gather(feeder, return_exceptions=True)
        response_id = done["response"]["id"]
        audio = client.reply_audio(response_id)
        results.append({"vad_ms": (client.arrivals[client.events.index(stopped)] - end_of_speech) * 1000,
                        "total_ms": (client.arrivals[client.events.index(first)] - end_of_speech) * 1000,
                        "silence_ms": max(client.playout_gaps(response_id), default=0.0) * 1000,
                        "spoken_pause_ms": longest_quiet(audio, 24000) * 1000,
                        "reply_s": len(audio) / 24000, "response_id": response_id,
                        "transcript": ("[cut after 90 s] " if done["response"]["status"] == "cancelled" else "")
                        + done["response"]["output"][0]["content"][0].get("transcript", "")})
    await client.close()
    return results


async def gateway_turns(port: int, engine_port: int, key: str, preset: str, root: Path,
                        questions: list[np.ndarray]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from tests.peers import ClientPeer

    class TimedPeer(ClientPeer):
        """Also notes when each data-channel event arrived."""

        arrivals: list[float] = []

        def _on_message(self, message: str) -> None:
            self.arrivals.append(time.monotonic())
            super()._on_message(message)

    gateway = subprocess.Popen([sys.executable, "-m", "gateway", "--upstream", "local", "--engine-port",
                                str(engine_port), "--port", str(port), "--vad-preset", preset, "--host", "127.0.0.1",
                                "--web-root", "", "--log-level", "WARNING", "--workers", "1"], cwd=root,
                               env={**os.environ, "ENGINE_API_KEY": key})
    try:
        wait_healthy(f"http://127.0.0.1:{port}/healthz", gateway, 60)
        peer = TimedPeer(f"http://127.0.0.1:{port}")
        await peer.connect()
        await peer.channel_open()
        await peer.wait_for("session.created", timeout=20)
        gaps_before = _metric(port, "gateway_outbound_gaps_total")
        cpu_before, started = cpu_seconds(gateway.pid), time.monotonic()
        heard_from = len(peer.heard)
        results = []
        for pcm in questions:
            mark = len(peer.events)
            end_of_speech = peer.mic.say(Upsampler().process(np.concatenate((silence(0.4), pcm))))
            stopped = await peer.wait_for("input_audio_buffer.speech_stopped", after=mark, timeout=30)
            started_event = await peer.wait_for("output_audio_buffer.started", after=mark, timeout=60)
            try:
                stopped_event = await peer.wait_for("output_audio_buffer.stopped", after=mark, timeout=90)
            except AssertionError:  # a runaway reply: noted, cut, and the next turn goes on
                peer.send({"type": "response.cancel"})
                stopped_event = await peer.wait_for("output_audio_buffer.cleared", after=mark, timeout=20)
                await peer.wait_for("response.done", after=mark, timeout=20)
            stopped_at = peer.arrivals[peer.events.index(stopped_event)]
            first_heard = next((when for when, frame in peer.heard if when > end_of_speech
                                and np.abs(frame).max() > 500), float("nan"))
            transcript = await peer.wait_for("response.output_audio_transcript.done", after=mark, timeout=10)
            if stopped_event["type"] == "output_audio_buffer.cleared":
                transcript = {**transcript, "transcript": "[cut after 90 s] " + transcript["transcript"]}
            results.append({"vad_ms": (peer.arrivals[peer.events.index(stopped)] - end_of_speech) * 1000,
                            "total_ms": (first_heard - end_of_speech) * 1000,
                            "silence_ms": longest_quiet(peer.heard_between(end_of_speech, stopped_at), 48000) * 1000,
                            "response_id": started_event["response_id"], "transcript": transcript["transcript"]})
            await asyncio.sleep(0.5)
        arrivals = np.array([when for when, _ in peer.heard[heard_from:]])
        intervals = np.diff(arrivals) * 1000
        media = {"call_s": time.monotonic() - started, "frames": len(arrivals),
                 "gateway_gaps": _metric(port, "gateway_outbound_gaps_total") - gaps_before,
                 "client_max_gap_ms": float(intervals.max()), "client_p99_ms": float(np.percentile(intervals, 99)),
                 "client_gaps_over_30ms": int((intervals > 30).sum()),
                 "gateway_cpu_per_call_s": (cpu_seconds(gateway.pid) - cpu_before) / (time.monotonic() - started)}
        await peer.close()
        return results, media
    finally:
        gateway.terminate()
        gateway.wait(10)


def _metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(float(m.group(1)) for m in re.finditer(rf"^{name}{{[^}}]*}} ([0-9.e+]+)$", text, re.M))


def report(title: str, results: list[dict[str, Any]], log: Path) -> dict[str, Any]:
    stts, responses = engine_timings(log)
    stt_by_turn = stts[-len(results):]
    rows: dict[str, list[float]] = {name: [] for name in (
        "end of speech → first reply audio", "  VAD wait (speech end → speech_stopped)", "  STT (commit → text)",
        "  LLM first piece", "  TTS first chunk", "  engine: commit → first audio ready",
        "longest silence inside a reply")}
    for result, stt in zip(results, stt_by_turn, strict=False):
        timing = responses.get(result["response_id"], {})
        rows["end of speech → first reply audio"].append(result["total_ms"])
        rows["  VAD wait (speech end → speech_stopped)"].append(result["vad_ms"])
        rows["  STT (commit → text)"].append(stt["stt_wait_ms"])
        rows["  LLM first piece"].append(timing.get("llm_first_piece_ms", np.nan) - timing.get("llm_start_ms", np.nan))
        rows["  TTS first chunk"].append(timing.get("tts_first_piece_ms", np.nan) - timing.get("llm_first_piece_ms",
                                                                                             np.nan))
        rows["  engine: commit → first audio ready"].append(timing.get("tts_first_piece_ms", np.nan))
        rows["longest silence inside a reply"].append(result["silence_ms"])
    print(f"\n{title}: {len(results)} turns, median / p90 (ms)")
    for name, values in rows.items():
        print(f"| {name:<42} | {_stat(values):>13} |")
    totals = [r["total_ms"] for r in results]
    silences = [r["silence_ms"] for r in results]
    later = statistics.median(totals[1:]) if len(totals) > 1 else float("nan")
    print(f"first call {totals[0]:.0f} ms vs later calls' median {later:.0f} ms ({(totals[0] / later - 1) * 100:+.0f} %); "
          f"longest in-reply silence p50 {statistics.median(silences):.0f} / max {max(silences):.0f} ms; "
          f"turns with a silence > 300 ms: {sum(s > 300 for s in silences)}/{len(silences)}")
    if "spoken_pause_ms" in results[0]:
        pauses = [r["spoken_pause_ms"] for r in results]
        print(f"longest pause inside the reply audio itself (Kokoro's own): p50 {statistics.median(pauses):.0f} / "
              f"max {max(pauses):.0f} ms; reply length p50 {statistics.median(r['reply_s'] for r in results):.1f} s")
    early = sum(1 for s in stt_by_turn if s.get("early"))
    done = [responses[r["response_id"]] for r in results if r["response_id"] in responses]
    stt_rtf = sum(s["stt_ms"] / 1000 for s in stt_by_turn) / max(1e-9, sum(s["audio_s"] for s in stt_by_turn))
    tts_rtf = sum(t["tts_s"] for t in done) / max(1e-9, sum(t["audio_s"] for t in done))
    tokens_per_s = [t["tokens"] / ((t["done_ms"] - t["llm_start_ms"]) / 1000) for t in done if t.get("tokens")]
    speculative = sum(1 for t in done if t.get("speculative"))
    print(f"STT served by the early transcription: {early}/{len(stt_by_turn)} turns; STT RTF {stt_rtf:.3f}; "
          f"TTS RTF under load {tts_rtf:.2f}; reply tokens/s incl. TTS pauses {_stat(tokens_per_s)}; "
          f"replies started on the early transcript: {speculative}/{len(done)}")
    for index, result in enumerate(results):
        print(f"  turn {index + 1}: {result['total_ms']:.0f} ms, silence {result['silence_ms']:.0f} ms: "
              f"{result['transcript'][:90]!r}")
    return {"title": title, "results": results, "first_ms": totals[0], "later_median_ms": later,
            "p50_ms": statistics.median(totals), "p90_ms": float(np.percentile(totals, 90)),
            "silence_p50_ms": statistics.median(silences), "silence_max_ms": max(silences), "tts_rtf": tts_rtf}


def _stat(values: list[float]) -> str:
    values = [v for v in values if v == v]
    if not values:
        return "-"
    return f"{statistics.median(values):.0f} / {np.percentile(values, 90):.0f}"


class Engine:
    """A fresh engine process with its own key, logging into ``log``."""

    def __init__(self, args: argparse.Namespace, log: Path) -> None:
        self.key = secrets.token_urlsafe(24)
        self.log = log
        env = {**os.environ, "ENGINE_API_KEY": self.key, "HF_HUB_OFFLINE": "1"}
        with log.open("w") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "gateway.engine", "--port", str(args.port),
                                             "--llm", args.llm, *args.engine_arg], stdout=out,
                                            stderr=subprocess.STDOUT, cwd=args.root, env=env)
        self.ready_s = wait_healthy(f"http://127.0.0.1:{args.port}/healthz", self.process, 900)

    def stop(self) -> float:
        rss = peak_rss_mb(self.process.pid)
        self.process.terminate()
        self.process.wait(10)
        return rss


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--mode", choices=("direct", "gateway", "both"), default="both")
    parser.add_argument("--llm", default="qwen2.5-1.5b")
    parser.add_argument("--vad-preset", choices=sorted(VAD_PRESETS), default="fast")
    parser.add_argument("--port", type=int, default=8799)
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout whose engine and gateway run")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--engine-arg", action="append", default=[], help="extra engine flag, e.g. --engine-arg=--nice=0")
    args = parser.parse_args()
    questions = synthesize_questions(args.turns)
    summaries = []
    for mode in ("direct", "gateway"):
        if args.mode not in (mode, "both"):
            continue
        engine = Engine(args, Path(f"/tmp/engine_latency_engine_{mode}.log"))
        try:
            print(f"\nengine ready in {engine.ready_s:.1f} s ({args.llm}, VAD preset {args.vad_preset}, "
                  f"{' '.join(args.engine_arg) or 'default flags'}, {args.root})")
            if mode == "direct":
                summaries.append(report("direct to the engine (WebSocket)",
                                        await direct_turns(args.port, engine.key, args.vad_preset, questions), engine.log))
            else:
                results, media = await gateway_turns(args.port + 1, args.port, engine.key, args.vad_preset, args.root,
                                                     questions)
                summaries.append({**report("through the gateway (aiortc client, Opus, 48 kHz)", results, engine.log),
                                  "media": media})
                print(f"media while the engine worked: {media['frames']} frames over {media['call_s']:.0f} s; gateway "
                      f"frames late > 30 ms: {media['gateway_gaps']:.0f}; at the client: max interval "
                      f"{media['client_max_gap_ms']:.0f} ms, p99 {media['client_p99_ms']:.1f} ms, "
                      f"> 30 ms: {media['client_gaps_over_30ms']}; gateway CPU {media['gateway_cpu_per_call_s']:.2f} s/s")
        finally:
            rss = engine.stop()
            print(f"engine peak RSS: {rss:.0f} MB")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "summaries": summaries},
                                        indent=1, default=str))


if __name__ == "__main__":
    asyncio.run(main())
