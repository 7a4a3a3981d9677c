"""Capacity and gateway-added latency under load, side by side with a plain aiortc echo server.

    python bench/load.py [--servers native python echo] [--calls 10 20 40 60 80 100 120] [--seconds 20]

Each server runs as its own process pinned to core 0 (the gateway with one worker, once per
``MEDIA_PATH``; the reference is a bare aiortc echo: it decodes the mic and sends it back,
no upstream at all). This process (pinned to core 1) runs a cheap Realtime upstream — it
answers each ~3 s of speech with ~2 s of audio — and N WebRTC clients. The load each client
puts on the server, the same for every server: continuous real-time Opus, 50 packets a second,
pre-encoded once from 3 s of voiced speech (varying pitch) and 3 s of quiet room noise (no
digital silence, so every packet is a real frame, as a browser's mic sends); the clients count
the packets that come back without decoding them. For each N, over a steady window: the
server's CPU (share of one core, CPU-seconds per call-second), frames received per call per
second (50 is perfect) and the longest gap between two of them, RSS per call, and from the
gateway's own histograms the added latency p50/p99 each way and outbound gaps > 30 ms. A step
is *clean* when every call got ≥ 49 frames/s and no gap over 100 ms; a server's steps stop at
its first unclean one. ``--native-client`` (default) sends and counts through the native pump
so the load client stays cheaper than what it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import gc
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np
from aiohttp import web
from aiortc import RTCPeerConnection, RTCSessionDescription
from av.packet import Packet
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.media import native  # noqa: E402
from gateway.media.native.call_media import NativeCallMedia, srtp_keys  # noqa: E402
from gateway.media.native.heap import CallHeap  # noqa: E402
from gateway.media.native.pacer import Pacer  # noqa: E402
from gateway.media.opus import OpusEncoder  # noqa: E402
from gateway.media.outbound_audio import OutboundAudioTrack  # noqa: E402
from tests.audio_tools import voiced  # noqa: E402
from tests.conftest import free_port, wait_healthy  # noqa: E402
from tests.fake_upstream import Behaviour, FakeRealtimeServer  # noqa: E402
from tests.peers import ClientPeer  # noqa: E402

TIME_BASE = fractions.Fraction(1, 48000)
TICK = os.sysconf("SC_CLK_TCK")


def pre_encoded_speech() -> list[bytes]:
    """6 s that loop: 3 s of voice (pitch gliding 120–220 Hz, four syllables a second), then 3 s
    of quiet room noise (~-50 dBFS, under the upstream's VAD), as 20 ms Opus packets encoded once
    the way a browser encodes a mic (voice, 32 kbps, in-band FEC)."""
    rng = np.random.default_rng(3)
    voice = np.concatenate([voiced(0.5, pitch, 48000, level=9000, seed=i)
                            for i, pitch in enumerate((120, 150, 180, 220, 170, 140))])
    noise = (rng.normal(0, 100, 48000 * 3)).astype(np.int16)
    pcm = np.concatenate((voice, noise))
    encoder = OpusEncoder(bitrate=32000, fec=True, loss_percent=5)
    return [encoder.encode(pcm[i:i + 960]) for i in range(0, len(pcm), 960)]


class LoopedMic:
    """``packetize`` for a mic track: the next pre-encoded packet, whatever PCM it is handed."""

    def __init__(self, packets: list[bytes], offset: int) -> None:
        self._packets = packets
        self._index = offset

    def __call__(self, pcm: np.ndarray, pts: int) -> Packet:
        packet = Packet(self._packets[self._index % len(self._packets)])
        self._index += 1
        packet.pts = pts
        packet.time_base = TIME_BASE
        return packet


SILENT_FRAME = np.zeros(960, np.int16)


@dataclass
class Client:
    peer: ClientPeer
    arrivals: list[float] = field(default_factory=list)
    setup_s: float = 0.0
    media: NativeCallMedia | None = None

    def count_packets(self) -> None:
        """Count the server's RTP packets as aiortc hands them over; nothing is decoded (a load
        client must stay cheap, or it measures itself)."""
        receiver = self.peer.pc.getTransceivers()[0].receiver

        async def arrived(packet: object, arrival_time_ms: int) -> None:
            self.arrivals.append(time.monotonic())

        receiver._handle_rtp_packet = arrived  # type: ignore[method-assign]

    def count_natively(self) -> None:
        """Count them straight off the socket: the native pump's receiver, one call a batch."""
        transceiver = self.peer.pc.getTransceivers()[0]
        dtls = transceiver.receiver.transport
        profile, rx_key, _ = srtp_keys(dtls)
        pump = native.load()
        session = pump.Session(profile, rx_key, False)
        loop = asyncio.get_running_loop()
        arrivals = self.arrivals
        receivers = []

        def drain() -> None:
            now = time.monotonic()
            for receiver in receivers:
                if receiver.queued:
                    arrivals.extend(now for _ in receiver.drain(None, now))

        for protocol in dtls.transport._connection._protocols:  # wherever the server sends from
            if type(protocol).__name__ == "StunProtocol":
                receivers.append(pump.Receiver(session, protocol.datagram_received, lambda: loop.call_soon(drain)))
                protocol.datagram_received = receivers[-1]


async def start_client(url: str, packets: list[bytes], index: int, pacer: Pacer | None,
                       heap: CallHeap | None = None) -> Client:
    """One caller. With a ``pacer`` (the native load client) its mic is paced by it and sent by
    the native pump, and what comes back is counted off the socket."""
    mic = LoopedMic(packets, offset=index * 37)
    peer = ClientPeer(url, packetize=mic)
    client = Client(peer)
    track: OutboundAudioTrack | None = None
    if pacer is not None:
        track = OutboundAudioTrack(lambda now: SILENT_FRAME, packetize=mic)
        track.hold()
        peer.pc.getSenders()[0].replaceTrack(track)
    else:
        client.count_packets()
    connected = asyncio.Event()
    peer.pc.on("connectionstatechange", lambda: peer.pc.connectionState == "connected" and connected.set())
    started = time.monotonic()
    await peer.connect()
    await asyncio.wait_for(connected.wait(), 20)
    client.setup_s = time.monotonic() - started
    if track is not None:
        transceiver = peer.pc.getTransceivers()[0]
        await asyncio.wait_for(transceiver.sender._RTCRtpSender__rtp_started.wait(), 10)
        media = NativeCallMedia(transceiver, track, pacer=pacer, heap=heap)
        why = media.start(None)
        if why is not None:
            raise RuntimeError(f"native load client: {why}")
        client.media = media
        client.count_natively()
    return client  # an aiortc mic without queued speech still sends LoopedMic's next packet each 20 ms


async def serve_echo(port: int) -> None:
    """The reference: a plain aiortc server that sends each caller's mic back (aiortc decodes and
    re-encodes it), with just enough of the gateway's HTTP interface for the load client."""
    pcs: set[RTCPeerConnection] = set()

    async def secrets(request: web.Request) -> web.Response:
        return web.json_response({"value": "echo", "expires_at": int(time.time()) + 600})

    async def calls(request: web.Request) -> web.Response:
        pc = RTCPeerConnection()
        pcs.add(pc)
        pc.on("track", lambda track: pc.addTrack(track) if track.kind == "audio" else None)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=await request.text(), type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return web.Response(status=201, text=pc.localDescription.sdp, content_type="application/sdp",
                            headers={"Location": f"/v1/realtime/calls/echo{len(pcs)}"})

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/v1/realtime/client_secrets", secrets)
    app.router.add_post("/v1/realtime/calls", calls)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


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


class ClientProbe:
    """The load client's own stalls (its garbage collections over 5 ms, its loop running a 5 ms
    timer over 30 ms late): a gap every call sees at once at such a moment is the client's."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str, float]] = []  # (monotonic, what, ms)
        self._started: float | None = None
        self._walked = 0
        self.task: asyncio.Task[None] | None = None

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            if info["generation"] == 2:
                self._walked = sum(len(gc.get_objects(g)) for g in range(3))
        elif self._started is not None:
            ms = (time.perf_counter() - self._started) * 1000
            if info["generation"] == 2:
                self.events.append((time.monotonic(), f"client gc2 ({self._walked} objects walked)", ms))
            elif ms > 5:
                self.events.append((time.monotonic(), f"client gc{info['generation']}", ms))

    async def _lag(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.005)
            late = loop.time() - before - 0.005
            if late > 0.03:
                self.events.append((time.monotonic(), "client loop late", late * 1000))

    def start(self) -> None:
        gc.callbacks.append(self._on_gc)
        self.task = asyncio.get_running_loop().create_task(self._lag())

    def stop(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        if self.task is not None:
            self.task.cancel()


def server_findings(path: Path | None) -> list[tuple[float, str, float, list[str]]]:
    """What ``bench/gc_probe.py`` logged: (monotonic, what, ms, stack)."""
    if path is None or not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if "gc" in item:
            walked = f" ({item['walked']} objects walked, {item['frozen']} frozen)" if item.get("walked") else ""
            out.append((item["t"], f"server gc{item['gc']}{walked}", item["ms"], []))
        elif "lag_ms" in item:
            out.append((item["t"], "server loop late", item["lag_ms"], []))
        elif "stall_ms" in item:
            out.append((item["t"], "server stall", item["stall_ms"], item.get("stack", [])))
    return out


def explain_gaps(gaps: list[tuple[int, float, float]], t0: float, t1: float, probe: ClientProbe | None,
                 probe_log: Path | None, threshold_ms: float) -> None:
    """Print each call's gaps over ``threshold_ms`` with what either side was doing then."""
    findings = [(t, what, ms, []) for t, what, ms in (probe.events if probe else [])] + server_findings(probe_log)
    findings = sorted(f for f in findings if t0 - 0.5 <= f[0] <= t1)
    big = sorted(sorted((f for f in findings if f[2] >= 20 or " gc2" in f[1]), key=lambda f: -f[2])[:12])
    clusters: list[list[tuple[int, float, float]]] = []  # gaps that began within 40 ms of each other
    for gap in sorted(gaps, key=lambda g: g[1]):
        if clusters and gap[1] - clusters[-1][0][1] <= 0.04:
            clusters[-1].append(gap)
        else:
            clusters.append([gap])
    if clusters:
        print(f"    {len(gaps)} gaps > {threshold_ms:.0f} ms in {len({g[0] for g in gaps})} calls, {len(clusters)} moments; "
              "the longest: " + "; ".join(
                  f"+{c[0][1] - t0:.2f} s {len(c)} call(s) up to {max(g[2] for g in c):.0f} ms"
                  for c in sorted(clusters, key=lambda c: -max(g[2] for g in c))[:8]))
    for t, what, ms, stack in big:
        near = [g for g in gaps if g[1] - 0.05 <= t <= g[1] + g[2] / 1000 + 0.05]
        print(f"    +{t - t0:.2f} s {what} {ms:.1f} ms{' (during a gap)' if near else ''}")
        for line in stack[-4:]:
            print(f"        {line}")
    gc2 = [f for f in findings if f[1].startswith("server gc2")]
    if gc2:
        print(f"    server: {len(gc2)} full collections in the window, longest {max(f[2] for f in gc2):.1f} ms")


async def census(pid: int, probe_log: Path | None) -> None:
    """Ask the probed gateway what a full collection walks now, and how long one takes."""
    if probe_log is None:
        return
    def taken() -> list[dict]:
        return [json.loads(line) for line in probe_log.read_text().splitlines() if '"census"' in line]

    before = len(taken())
    os.kill(pid, signal.SIGUSR1)
    for _ in range(50):
        await asyncio.sleep(0.1)
        lines = taken()
        if len(lines) > before:
            item = lines[-1]
            top = ", ".join(f"{name.rsplit('.', 1)[-1]} {count}" for name, count in item["top"][:12])
            print(f"    census: {item['census']} objects outside the frozen heap, a full collection "
                  f"{item['full_ms']} ms; {top}")
            return


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


@dataclass
class Step:
    calls: int
    cpu: float  # share of one core
    per_call: float  # CPU-s per call-s
    median_rate: float
    min_rate: float
    worst_gap_ms: float
    rss_per_call: float
    latency: str
    gaps: str

    @property
    def clean(self) -> bool:
        return self.min_rate >= 49.0 and self.worst_gap_ms <= 100.0


def server_command(kind: str, port: int, upstream: str, args: argparse.Namespace) -> list[str]:
    taskset = ["taskset", "-c", args.gateway_cores, sys.executable]
    if kind == "echo":
        return taskset + [str(Path(__file__).resolve()), "--serve-echo", str(port)]
    gateway = [str(ROOT / "bench" / "gc_probe.py")] if args.probe else ["-m", "gateway"]
    return taskset + gateway + [
        "--upstream", "url", "--upstream-url", upstream, "--openai-api-key", "sk-test-upstream-key",
        "--host", "127.0.0.1", "--port", str(port), "--rate-limit", "1000000", "--max-calls", "1000",
        "--max-calls-per-client", "0", "--resume-grace", "0", "--receive-path", args.receive_path,
        "--media-path", kind, "--log-level", "ERROR", "--workers", str(args.workers), "--event-loop", args.event_loop,
        # The load generator's own loop stalls while it sets up a batch of clients (a DTLS
        # certificate each): don't let that pass for vanished browsers.
        "--peer-timeout", "15"]


async def measure_server(kind: str, args: argparse.Namespace, packets: list[bytes], upstream: str) -> list[Step]:
    port = free_port()
    probe_log = Path(tempfile.mkstemp(prefix=f"probe-{kind}-", suffix=".jsonl")[1]) if args.probe else None
    client_probe = ClientProbe() if args.probe else None
    if client_probe is not None:
        client_probe.start()
    env = os.environ | ({"GC_PROBE_LOG": str(probe_log)} if probe_log else {}) | (
        {"GC_PROBE_CALL_FREEZE": "0"} if not args.call_freeze else {})
    server = subprocess.Popen(server_command(kind, port, upstream, args), cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    pacer = Pacer(asyncio.get_running_loop()) if args.native_client else None
    heap = CallHeap()  # the native load clients', like a gateway worker's
    steps: list[Step] = []
    clients: list[Client] = []
    gateway = kind != "echo"
    try:
        await wait_healthy(url)
        await asyncio.sleep(1.0)
        baseline_rss = rss_mb(process_tree(server.pid))
        if gateway and args.idle_calls:
            setups, idle_before, idle_after = await idle_setup_and_barge_in(url, args.idle_calls)

            def idle(name: str, quant: float) -> str:
                value = quantile(idle_before.get(name, {}), idle_after.get(name, {}), quant)
                return "-" if value is None else f"{value * 1000:.1f}"

            print(f"[{kind}] idle, {args.idle_calls} calls one at a time: set-up client p50 "
                  f"{np.percentile(setups, 50) * 1000:.0f} / p99 {np.percentile(setups, 99) * 1000:.0f} ms; barge-in "
                  f"p50 {idle('gateway_barge_in_seconds', 0.5)} / p99 {idle('gateway_barge_in_seconds', 0.99)} ms")
            baseline_rss = rss_mb(process_tree(server.pid))
        for target in args.calls:
            while len(clients) < target:
                batch = min(10, target - len(clients))
                clients += await asyncio.gather(*(start_client(url, packets, len(clients) + i, pacer, heap)
                                                  for i in range(batch)))
            await asyncio.sleep(3)  # settle
            pids = process_tree(server.pid)
            before = await histograms(url) if gateway else {}
            cpu0, t0 = cpu_seconds(pids), time.monotonic()
            client_cpu0 = time.process_time()
            marks = [len(c.arrivals) for c in clients]
            await asyncio.sleep(args.seconds)
            after = await histograms(url) if gateway else {}
            cpu1, t1 = cpu_seconds(pids), time.monotonic()
            client_cpu = (time.process_time() - client_cpu0) / (t1 - t0)
            elapsed = t1 - t0
            rates, worst = [], 0.0
            call_gaps: list[tuple[int, float, float]] = []  # (call, when it began, ms)
            for index, (c, m) in enumerate(zip(clients, marks, strict=False)):
                window = np.array([t0] + [t for t in c.arrivals[m:] if t <= t1] + [t1])
                rates.append((len(window) - 2) / elapsed)
                steps_s = np.diff(window)
                worst = max(worst, float(np.max(steps_s)))
                call_gaps += [(index, float(window[i]), float(steps_s[i] * 1000))
                         for i in np.flatnonzero(steps_s > args.gap_ms / 1000)]
            rss = rss_mb(pids)

            def q(name: str, quant: float, before: dict = before, after: dict = after) -> str:
                value = quantile(before.get(name, {}), after.get(name, {}), quant)
                return "-" if value is None else f"{value * 1000:.1f}"

            latency = (f"in {q('gateway_added_latency_seconds|inbound', 0.5)} / "
                       f"{q('gateway_added_latency_seconds|inbound', 0.99)}, out "
                       f"{q('gateway_added_latency_seconds|outbound', 0.5)} / "
                       f"{q('gateway_added_latency_seconds|outbound', 0.99)}") if gateway else "-"
            gaps = (f"{after.get('gaps', {0.0: 0})[0.0] - before.get('gaps', {0.0: 0})[0.0]:.0f}"
                    if gateway else "-")
            step = Step(target, (cpu1 - cpu0) / elapsed, (cpu1 - cpu0) / elapsed / target, float(np.median(rates)),
                        min(rates), worst * 1000, (rss - baseline_rss) / target, latency, gaps)
            steps.append(step)
            print(f"[{kind}] {target} calls: CPU {100 * step.cpu:.0f}% ({step.per_call:.4f} CPU-s per call-s), "
                  f"frames/s median {step.median_rate:.1f} min {step.min_rate:.1f}, worst gap {step.worst_gap_ms:.0f} ms, "
                  f"RSS {step.rss_per_call:.2f} MB/call, added latency ms {latency}, outbound gaps>30ms {gaps}; "
                  f"load client {100 * client_cpu:.0f}% of its core{' (SATURATED: measures the client)' if client_cpu > 0.9 else ''} "
                  f"-> {'clean' if step.clean else 'NOT clean'}",
                  flush=True)
            if args.probe or call_gaps:
                explain_gaps(call_gaps, t0, t1, client_probe, probe_log, args.gap_ms)
            if args.probe and gateway:
                await census(server.pid, probe_log)
            if not step.clean and not args.keep_going:
                break
    finally:
        for c in clients:
            if c.media is not None:
                c.media.stop()
        await asyncio.gather(*(c.peer.close() for c in clients), return_exceptions=True)
        if args.call_freeze:
            heap.reclaim()  # the ended clients' heap now, not in the next server's window
        server.terminate()
        server.wait(30)
        if client_probe is not None:
            client_probe.stop()
        if probe_log is not None:
            print(f"[{kind}] probe log: {probe_log}")
    return steps


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--servers", nargs="+", default=["native", "python", "echo"],
                        help="native / python: the gateway with that MEDIA_PATH; echo: plain aiortc")
    parser.add_argument("--media-path", choices=["native", "python"], help="shorthand: only this gateway (and echo)")
    parser.add_argument("--calls", type=int, nargs="+", default=[10, 20, 40, 60, 80, 100, 120])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--idle-calls", type=int, default=0, help="one-at-a-time calls for set-up and barge-in")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--receive-path", default="gateway")
    parser.add_argument("--event-loop", default="uvloop")
    parser.add_argument("--gateway-cores", default="0")
    parser.add_argument("--client-cores", default="1")
    parser.add_argument("--native-client", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--keep-going", action="store_true", help="measure every step, clean or not")
    parser.add_argument("--probe", action="store_true",
                        help="run the gateway under bench/gc_probe.py and explain each gap (GC, loop stalls, stacks)")
    parser.add_argument("--call-freeze", action=argparse.BooleanOptionalAction, default=True,
                        help="--no-call-freeze leaves calls' set-up heaps unfrozen, here and (with --probe) in "
                             "the gateway: the before of gateway/media/native/heap.py")
    parser.add_argument("--gap-ms", type=float, default=60.0, help="gaps longer than this are listed")
    parser.add_argument("--serve-echo", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_echo:
        await serve_echo(args.serve_echo)
        return
    if args.media_path:
        args.servers = [args.media_path, "echo"]
    if not args.call_freeze:  # the before of an A/B, on this side too (the native load client's calls)
        from gateway.media.native.heap import CallHeap

        def count_only(self: CallHeap) -> None:
            self.live += 1

        CallHeap.call_started = count_only  # type: ignore[method-assign]
    os.sched_setaffinity(0, {int(c) for c in args.client_cores.split(",")})
    packets = pre_encoded_speech()
    if args.call_freeze:  # as the gateway does once it serves: its start-up heap out of the collector's reach
        gc.freeze()
    sizes = [len(p) for p in packets]
    print(f"load per call: 50 Opus packets/s each way, mic packets {np.mean(sizes):.0f} B mean "
          f"({min(sizes)}-{max(sizes)}), 3 s voice / 3 s room noise looping; the upstream answers each "
          f"~3 s of speech with ~2 s of audio; servers on core(s) {args.gateway_cores}, clients on "
          f"{args.client_cores} ({'native' if args.native_client else 'aiortc'} load client), "
          f"{args.seconds:.0f} s windows; load average before: {os.getloadavg()[0]:.2f}")
    results: dict[str, list[Step]] = {}
    async with FakeRealtimeServer(Behaviour(reply_seconds=2.0, speed=5.0, reply_pitch_hz=220.0)) as fake:
        for kind in args.servers:
            results[kind] = await measure_server(kind, args, packets, fake.url)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}\n")
    print("| server | clean calls on one core | CPU-s per call-s at 20 calls | added latency at the most clean "
          "calls, ms p50/p99 | RSS MB per call |")
    print("|---|---|---|---|---|")
    for kind, steps in results.items():
        clean = [s for s in steps if s.clean]
        best = clean[-1] if clean else None
        at20 = next((s for s in steps if s.calls == 20), None)
        label = {"native": "gateway, MEDIA_PATH=native", "python": "gateway, MEDIA_PATH=python",
                 "echo": "plain aiortc echo"}.get(kind, kind)
        bound = (f"≥ {best.calls}" + (f" (< {steps[-1].calls})" if not steps[-1].clean else " (all steps clean)")
                 if best else f"< {steps[0].calls}")
        print(f"| {label} | {bound} | {f'{at20.per_call:.4f} ({100 * at20.cpu:.0f}% of the core)' if at20 else '-'} | "
              f"{best.latency if best else '-'} | {f'{best.rss_per_call:.2f}' if best else '-'} |")


if __name__ == "__main__":
    asyncio.run(main())
