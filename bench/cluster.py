"""Scale-out figures: calls sustained by 1, 2 and 3 instances behind nginx, set-up through nginx
vs straight to an instance, and the forwarding fallback's added hop.

    sudo .venv/bin/python bench/cluster.py [--instances 1 2 3] [--calls 10 20 30 40] [--seconds 8]
                                           [--gateway-cores 0] [--hop-calls 10]

The cluster is tests/cluster/bed.py's: every instance in a network namespace of its own (its
own address; media really goes to different "hosts"), sharing one redis-server, behind the
shipped nginx configuration. The instances run pinned (``taskset``) round robin over
``--gateway-cores``; this process — the load generator, the fake upstream (answers ~3 s of
speech with ~2 s of audio), nginx and Redis, which inherit its affinity — is pinned to the
other cores. Each caller is a real aiortc peer placed through the front (minted there, offered
there: nginx's ``least_conn`` spreads them) that sends pre-encoded Opus in real time and counts,
without decoding, the RTP packets that come back.

For each instance count, calls are added step by step; after each step, over ``--seconds``:
packets received per call per second (50 is every 20 ms frame), the longest silence between two
packets of any call, the instances' CPU (share of one core). A step is *clean* when every call
gets ≥ 49 packets/s and no gap exceeds 100 ms; "sustained" is the last clean step.

On a 2-core machine one core is the load generator's, so every instance count shares the same
single core: the table shows what spreading one core's calls over N instances costs (nginx,
Redis, heartbeats, N processes' fixed overhead), not N× capacity, which needs N cores.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.load import LoopedMic, pre_encoded_speech  # noqa: E402
from tests.cluster.bed import ClusterBed, Instance, free_port, unavailable_reason  # noqa: E402
from tests.cluster.conftest import ThreadedUpstream  # noqa: E402
from tests.cluster.figures import measure  # noqa: E402
from tests.peers import ClientPeer  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


class PinnedBed(ClusterBed):
    """The bed with each instance under ``taskset`` on its core."""

    cores: list[int]

    def argv(self, instance: Instance) -> list[str]:
        argv = super().argv(instance)
        core = self.cores[[i.name for i in self.instances].index(instance.name) % len(self.cores)]
        python = argv.index(sys.executable)
        return [*argv[:python], "taskset", "-c", str(core), *argv[python:]]


@dataclass
class Caller:
    peer: ClientPeer
    arrivals: list[float] = field(default_factory=list)

    def count_packets(self) -> None:
        """Count the gateway's RTP packets as aiortc hands them over; nothing is decoded."""
        receiver = self.peer.pc.getTransceivers()[0].receiver

        seen: set[int] = set()

        async def arrived(packet: Any, arrival_time_ms: int) -> None:
            if packet.sequence_number not in seen:  # a packet counts once, however often it came
                seen.add(packet.sequence_number)
                self.arrivals.append(time.monotonic())

        receiver._handle_rtp_packet = arrived  # type: ignore[method-assign]


async def start_caller(front: str, packets: list[bytes], index: int) -> Caller:
    peer = ClientPeer(front, packetize=LoopedMic(packets, offset=index * 37))
    connected = asyncio.Event()
    peer.pc.on("connectionstatechange", lambda: peer.pc.connectionState == "connected" and connected.set())
    await peer.connect()
    await asyncio.wait_for(connected.wait(), 30)
    caller = Caller(peer)
    caller.count_packets()
    peer.mic.say(np.zeros(48000 * 3600, np.int16))  # keep the (pre-encoded) mic running
    return caller


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICK


def process_tree(pid: int) -> list[int]:
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [pid] + [p for child in children for p in process_tree(int(child))]


@dataclass
class Step:
    calls: int
    spread: str
    median_rate: float
    min_rate: float
    worst_gap_ms: float
    cpu: float

    @property
    def clean(self) -> bool:
        return self.min_rate >= 49.0 and self.worst_gap_ms <= 100.0


async def measure_step(bed: ClusterBed, callers: list[Caller], seconds: float) -> Step:
    pids = [p for i in bed.instances if i.process is not None for p in process_tree(i.process.pid)]
    await asyncio.sleep(2.0)  # the newest calls settle
    cpu_before, start = cpu_seconds(pids), time.monotonic()
    await asyncio.sleep(seconds)
    end, cpu = time.monotonic(), cpu_seconds(pids) - cpu_before
    rates, gaps = [], []
    for caller in callers:
        window = [t for t in caller.arrivals if start <= t < end]
        rates.append(len(window) / (end - start))
        edges = [start, *window, end]
        gaps.append(max(b - a for a, b in zip(edges, edges[1:], strict=False)) * 1000)
    owners: dict[str, int] = {}
    for caller in callers:
        name = str(caller.peer.location).split("_")[-2]
        owners[name] = owners.get(name, 0) + 1
    if os.environ.get("BENCH_VERBOSE"):
        print("    per call packets/s:", " ".join(f"{r:.0f}" for r in rates), " gaps ms:", " ".join(f"{g:.0f}" for g in gaps))
    return Step(len(callers), " ".join(f"{k}:{v}" for k, v in sorted(owners.items())), statistics.median(rates),
                min(rates), max(gaps), cpu / (end - start))


async def capacity(bed: ClusterBed, steps: list[int], seconds: float) -> list[Step]:
    packets = pre_encoded_speech()
    callers: list[Caller] = []
    results: list[Step] = []
    try:
        for target in steps:
            while len(callers) < target:
                callers.append(await start_caller(bed.front, packets, len(callers)))
            step = await measure_step(bed, callers, seconds)
            results.append(step)
            print(f"  {step.calls:3d} calls ({step.spread}): packets/s median {step.median_rate:5.1f} min "
                  f"{step.min_rate:5.1f}, worst gap {step.worst_gap_ms:6.0f} ms, instances' CPU "
                  f"{step.cpu * 100:4.0f}% of a core ({step.cpu * 100 / step.calls:.1f}% per call)  "
                  f"{'clean' if step.clean else 'NOT clean'}", flush=True)
            if not step.clean:
                break
    finally:
        for caller in callers:
            await caller.peer.close()
    return results


def open_bed(workdir: Path, count: int, cores: list[int]) -> tuple[PinnedBed, ThreadedUpstream]:
    bed = PinnedBed(workdir, count, flags=("--rate-limit", "1000000", "--max-calls", "1000",
                                           "--max-calls-per-client", "0", "--peer-timeout", "15",
                                           "--log-level", "ERROR"), two_workers_first=False)
    bed.cores = cores
    port = free_port()
    bed.upstream_url = f"ws://{bed.bridge_address}:{port}/v1/realtime"
    bed.open_network()
    upstream = ThreadedUpstream(bed.bridge_address, port)
    upstream.__enter__()
    bed.open_services()
    return bed, upstream


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--calls", type=int, nargs="+", default=[10, 20, 30, 40])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--gateway-cores", default="0", help="cores for the instances, comma-separated")
    parser.add_argument("--hop-calls", type=int, default=10, help="set-ups per front for the hop figures (0: skip)")
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)  # peers torn down at the end of a step log their tracebacks
    reason = unavailable_reason()
    if reason is not None:
        raise SystemExit(f"bench/cluster.py: {reason}")
    cores = [int(c) for c in args.gateway_cores.split(",")]
    others = set(range(os.cpu_count() or 1)) - set(cores)
    if others:
        os.sched_setaffinity(0, others)  # load generator, upstream, nginx, Redis (inherited)
    print(f"instances on cores {cores}, load generator / nginx / Redis on {sorted(others) or 'the same'}; "
          f"load average {os.getloadavg()[0]:.2f} at start", flush=True)
    table: list[tuple[int, Step | None, Step | None, Step]] = []
    for count in args.instances:
        with tempfile.TemporaryDirectory(prefix="gateway-bench-cluster-") as workdir:
            print(f"{count} instance(s):", flush=True)
            bed, upstream = open_bed(Path(workdir), count, cores)
            try:
                steps = asyncio.run(capacity(bed, args.calls, args.seconds))
                if count == max(args.instances) and args.hop_calls:
                    asyncio.run(measure(bed, args.hop_calls))
            finally:
                bed.close()
                upstream.__exit__()
        clean = [s for s in steps if s.clean]
        table.append((count, clean[-1] if clean else None, next((s for s in steps if not s.clean), None), steps[0]))
    print(f"\n| instances | calls sustained (clean) | instances' CPU per call, first step | first step not clean | "
          f"load average at end {os.getloadavg()[0]:.2f} |")
    print("| --- | --- | --- | --- | --- |")
    for count, sustained, failed, first in table:
        last = f"{sustained.calls} ({sustained.spread})" if sustained else "none"
        per_call = f"{first.cpu * 100 / first.calls:.1f}% of a core ({first.calls} calls: {first.spread})"
        worse = (f"{failed.calls}: min {failed.min_rate:.1f} packets/s, gap {failed.worst_gap_ms:.0f} ms"
                 if failed else f"none up to {args.calls[-1]}")
        print(f"| {count} | {last} | {per_call} | {worse} | |")


if __name__ == "__main__":
    main()
