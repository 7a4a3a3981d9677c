"""Capacity and gateway-added latency under load: N concurrent calls against a running gateway.

    python bench/load.py [--calls 10 20 40 60 80 100] [--seconds 20] [--workers 1] [--receive-path gateway]

The gateway runs as its own process (pinned to core 0 with one worker); this process (pinned to
core 1) runs a cheap Realtime upstream — it answers each ~3 s of speech with ~2 s of audio —
and N WebRTC clients that send pre-encoded Opus in real time and count, without decoding, the
packets that come back. For each N, over a steady window: the gateway's CPU (share of one core
and CPU-seconds per call-second), frames received per call per second (50 is perfect),
outbound gaps > 30 ms (measured inside the gateway), RSS and RSS per call, and from the gateway's
own histograms the added latency p50/p99 each way and the set-up of the calls that step added.
First, on the idle gateway, ``--idle-calls`` calls one at a time give set-up (POST → connected,
client and gateway side) and barge-in (user speech over a reply → silence out).
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np
from av.packet import Packet
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.media.opus import OpusEncoder  # noqa: E402
from tests.audio_tools import voiced  # noqa: E402
from tests.conftest import free_port, wait_healthy  # noqa: E402
from tests.fake_upstream import Behaviour, FakeRealtimeServer  # noqa: E402
from tests.peers import ClientPeer  # noqa: E402

TIME_BASE = fractions.Fraction(1, 48000)
TICK = os.sysconf("SC_CLK_TCK")


def pre_encoded_speech() -> list[bytes]:
    """6 s that loop: 3 s of voice, 3 s of silence, as 20 ms Opus packets (encoded once)."""
    pcm = np.concatenate((voiced(3.0, 170.0, 48000, level=9000), np.zeros(48000 * 3, np.int16)))
    encoder = OpusEncoder(bitrate=32000)
    return [encoder.encode(pcm[i:i + 960]) for i in range(0, len(pcm), 960)]


class LoopedMic:
    """``packetize`` for MicTrack: the next pre-encoded packet, whatever PCM it is handed."""

    def __init__(self, packets: list[bytes], offset: int) -> None:
        self._packets = packets
        self._index = offset

    def __call__(self, pcm: np.ndarray, pts: int) -> Packet:
        packet = Packet(self._packets[self._index % len(self._packets)])
        self._index += 1
        packet.pts = pts
        packet.time_base = TIME_BASE
        return packet


@dataclass
class Client:
    peer: ClientPeer
    arrivals: list[float] = field(default_factory=list)
    setup_s: float = 0.0

    def count_packets(self) -> None:
        """Count the assistant's RTP packets as they arrive; nothing is decoded (a load client
        must stay cheap, or it measures itself)."""
        receiver = self.peer.pc.getTransceivers()[0].receiver

        async def arrived(packet: object, arrival_time_ms: int) -> None:
            self.arrivals.append(time.monotonic())

        receiver._handle_rtp_packet = arrived  # type: ignore[method-assign]


async def start_client(url: str, packets: list[bytes], index: int) -> Client:
    peer = ClientPeer(url, packetize=LoopedMic(packets, offset=index * 37))
    client = Client(peer)
    client.count_packets()
    connected = asyncio.Event()
    peer.pc.on("connectionstatechange", lambda: peer.pc.connectionState == "connected" and connected.set())
    started = time.monotonic()
    await peer.connect()
    await asyncio.wait_for(connected.wait(), 20)
    client.setup_s = time.monotonic() - started
    peer.mic.say(np.zeros(48000 * 3600, np.int16))  # keep the (pre-encoded) mic running
    return client


async def idle_setup_and_barge_in(url: str, calls: int) -> tuple[list[float], dict[str, dict[float, float]],
                                                                  dict[str, dict[float, float]]]:
    """One call at a time on the idle gateway: POST → ICE/DTLS connected as the client sees it,
    then a turn, and speech over the reply (a barge-in). Returns the client's set-up times and
    the gateway's histograms before and after."""
    before = await histograms(url)
    setups = []
    for _ in range(calls):
        peer = ClientPeer(url)
        connected = asyncio.Event()
        peer.pc.on("connectionstatechange", lambda p=peer: p.pc.connectionState == "connected" and connected.set())
        try:
            started = time.monotonic()
            await peer.connect()
            await asyncio.wait_for(connected.wait(), 20)
            setups.append(time.monotonic() - started)
            await peer.channel_open()
            await asyncio.sleep(0.5)
            peer.mic.say(voiced(1.2, 170.0, 48000, seed=7))
            await peer.wait_for("output_audio_buffer.started", timeout=15)
            peer.mic.say(voiced(1.0, 170.0, 48000, seed=8))  # over the reply
            await peer.wait_for("output_audio_buffer.cleared", timeout=15)
            await asyncio.sleep(0.2)  # the first silent frame goes out (and is counted) before we hang up
            await peer.hang_up()
        finally:
            await peer.close()
    return setups, before, await histograms(url)


def process_tree(pid: int) -> list[int]:
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [pid] + [p for child in children for p in process_tree(int(child))]


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / TICK


def rss_mb(pids: list[int]) -> float:
    return sum(int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{p}/status").read_text()).group(1))
               for p in pids) / 1024


async def histograms(url: str) -> dict[str, dict[float, float]]:
    """Cumulative bucket counts per histogram (summed over workers and label sets)."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/metrics") as response:
            text = await response.text()
    out: dict[str, dict[float, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                key = sample.name[:-7] + "".join(f"|{v}" for k, v in sorted(sample.labels.items())
                                                 if k not in ("le", "worker"))
                bucket = float(sample.labels["le"])
                out.setdefault(key, {})[bucket] = out.get(key, {}).get(bucket, 0) + sample.value
            elif sample.name == "gateway_outbound_gaps_total":
                out.setdefault("gaps", {0.0: 0.0})[0.0] += sample.value
    return out


def quantile(before: dict[float, float], after: dict[float, float], q: float) -> float | None:
    """Quantile of what a histogram gained between two scrapes (linear within a bucket)."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0) for b in bounds]
    total = counts[-1] if counts else 0
    if total <= 0:
        return None
    target, previous_bound, previous_count = q * total, 0.0, 0.0
    for bound, count in zip(bounds, counts, strict=False):
        if count >= target:
            if bound == float("inf"):
                return previous_bound
            share = (target - previous_count) / max(count - previous_count, 1e-9)
            return previous_bound + share * (bound - previous_bound)
        previous_bound, previous_count = bound, count
    return previous_bound


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, nargs="+", default=[10, 20, 40, 60, 80, 100])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--idle-calls", type=int, default=10, help="one-at-a-time calls for set-up and barge-in")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--receive-path", default="gateway")
    parser.add_argument("--event-loop", default="uvloop")
    parser.add_argument("--gateway-cores", default="0")
    parser.add_argument("--client-cores", default="1")
    args = parser.parse_args()
    os.sched_setaffinity(0, {int(c) for c in args.client_cores.split(",")})
    packets = pre_encoded_speech()
    async with FakeRealtimeServer(Behaviour(reply_seconds=2.0, speed=5.0, reply_pitch_hz=220.0)) as fake:
        port = free_port()
        gateway = subprocess.Popen(
            ["taskset", "-c", args.gateway_cores, sys.executable, "-m", "gateway", "--upstream", "url",
             "--upstream-url", fake.url, "--openai-api-key", "sk-test-upstream-key", "--host", "127.0.0.1",
             "--port", str(port), "--rate-limit", "1000000", "--max-calls", "1000", "--max-calls-per-client", "0",
             "--resume-grace", "0",
             "--receive-path", args.receive_path, "--log-level", "ERROR", "--workers", str(args.workers),
             "--event-loop", args.event_loop,
             # The load generator's own loop stalls while it sets up a batch of clients (a DTLS
             # certificate each): don't let that pass for vanished browsers.
             "--peer-timeout", "15"],
            cwd=ROOT)
        url = f"http://127.0.0.1:{port}"
        try:
            await wait_healthy(url)
            baseline_rss = rss_mb(process_tree(gateway.pid))
            print(f"gateway: {args.workers} worker(s) on core(s) {args.gateway_cores}, receive path "
                  f"{args.receive_path}, {args.event_loop} loop; idle RSS {baseline_rss:.0f} MB")
            if args.idle_calls:
                setups, idle_before, idle_after = await idle_setup_and_barge_in(url, args.idle_calls)

                def idle(name: str, quant: float) -> str:
                    value = quantile(idle_before.get(name, {}), idle_after.get(name, {}), quant)
                    return "-" if value is None else f"{value * 1000:.1f}"

                print(f"idle gateway, {args.idle_calls} calls one at a time: set-up (POST → connected) client "
                      f"p50 {np.percentile(setups, 50) * 1000:.0f} / p99 {np.percentile(setups, 99) * 1000:.0f} ms, "
                      f"gateway p50 {idle('gateway_call_setup_seconds', 0.5)} / p99 "
                      f"{idle('gateway_call_setup_seconds', 0.99)} ms; barge-in (speech_started → silence out) "
                      f"p50 {idle('gateway_barge_in_seconds', 0.5)} / p99 {idle('gateway_barge_in_seconds', 0.99)} ms")
            baseline_rss = rss_mb(process_tree(gateway.pid))
            print()
            print("| calls | gateway CPU (% of a core) | CPU-s per call-s | frames/s per call (50 = perfect) | "
                  "outbound gaps > 30 ms | RSS MB (per call) | added latency in p50/p99 ms | out p50/p99 ms | "
                  "set-up p50/p99 ms (gateway, new calls) |")
            print("|---|---|---|---|---|---|---|---|---|")
            clients: list[Client] = []
            for target in args.calls:
                ramp = await histograms(url)
                while len(clients) < target:
                    batch = min(10, target - len(clients))
                    clients += await asyncio.gather(*(start_client(url, packets, len(clients) + i) for i in range(batch)))
                await asyncio.sleep(3)  # settle
                pids = process_tree(gateway.pid)
                before, cpu0, t0 = await histograms(url), cpu_seconds(pids), time.monotonic()
                marks = [len(c.arrivals) for c in clients]
                await asyncio.sleep(args.seconds)
                after, cpu1, t1 = await histograms(url), cpu_seconds(pids), time.monotonic()
                elapsed = t1 - t0
                rates = [(len(c.arrivals) - m) / elapsed for c, m in zip(clients, marks, strict=False)]
                rss = rss_mb(pids)

                def q(name: str, quant: float) -> str:
                    value = quantile(before.get(name, {}), after.get(name, {}), quant)
                    return "-" if value is None else f"{value * 1000:.1f}"

                def setup(quant: float) -> str:  # of the calls this step added (set up under load)
                    value = quantile(ramp.get("gateway_call_setup_seconds", {}),
                                     before.get("gateway_call_setup_seconds", {}), quant)
                    return "-" if value is None else f"{value * 1000:.0f}"

                gaps = after.get("gaps", {0.0: 0})[0.0] - before.get("gaps", {0.0: 0})[0.0]
                print(f"| {target} | {100 * (cpu1 - cpu0) / elapsed:.0f}% | {(cpu1 - cpu0) / elapsed / target:.4f} | "
                      f"{np.median(rates):.1f} (min {min(rates):.1f}) | {gaps:.0f} | {rss:.0f} "
                      f"({(rss - baseline_rss) / target:.2f}) | "
                      f"{q('gateway_added_latency_seconds|inbound', 0.5)} / {q('gateway_added_latency_seconds|inbound', 0.99)} | "
                      f"{q('gateway_added_latency_seconds|outbound', 0.5)} / {q('gateway_added_latency_seconds|outbound', 0.99)} | "
                      f"{setup(0.5)} / {setup(0.99)} |", flush=True)
            await asyncio.gather(*(c.peer.close() for c in clients), return_exceptions=True)
        finally:
            gateway.terminate()
            gateway.wait(30)


if __name__ == "__main__":
    asyncio.run(main())
