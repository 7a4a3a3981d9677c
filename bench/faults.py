"""Figures for calls that survive: dead-peer detection, upstream reconnect gap, resume after an
outage, and a soak.

    python bench/faults.py [--vanish 20] [--drops 10] [--outages 5] [--soak 1000]   (root: namespaces)

* Dead-peer detection: calls whose browser vanishes without a word (no DTLS close, no BYE);
  time from the last packet sent to the gateway ending the call (RESUME_GRACE=0), p50 / max.
* Upstream reconnect gap: the upstream is killed mid-call; the time until the replacement session
  is configured and restored (the client's ``session.updated``), p50 / max.
* Resume after an outage: the netbed (network namespaces, tests/netbed) cuts a call's path for
  5 s; the time from the network's return to the client's call running again on a new
  connection with its resume token (tests/resume_client.py), p50 / max.
* Soak: N short calls against one gateway process (half hung up with DELETE, half just closed,
  one in ten vanishing); the gateway's RSS, open fds and threads before and after (after the
  warm-up call, so first-call allocations do not count as growth).
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
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import free_port, wait_healthy  # noqa: E402
from tests.fake_upstream import Behaviour, FakeRealtimeServer  # noqa: E402
from tests.peers import ClientPeer  # noqa: E402
from tests.server.test_soak import vanish  # noqa: E402


def gateway_process(fake: FakeRealtimeServer, port: int, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gateway", "--workers", "1", "--upstream", "url", "--upstream-url",
                             fake.url, "--openai-api-key", "sk-test-upstream-key", "--host", "127.0.0.1", "--port",
                             str(port), "--rate-limit", "1000000", "--max-calls", "1000", "--max-calls-per-client", "0",
                             "--log-level", "WARNING",
                             *extra], cwd=ROOT)


async def healthz(url: str) -> dict:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/healthz") as response:
        return await response.json()


def resources(pid: int) -> tuple[float, int, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024
    threads = int(re.search(r"Threads:\s+(\d+)", status).group(1))
    return rss, len(os.listdir(f"/proc/{pid}/fd")), threads


async def connected(url: str) -> ClientPeer:
    peer = ClientPeer(url)
    await peer.connect()
    await peer.channel_open()
    await peer.wait_for("session.created", timeout=20)
    return peer


async def dead_peer_detection(fake: FakeRealtimeServer, count: int) -> list[float]:
    port = free_port()
    process = gateway_process(fake, port, "--resume-grace", "0")
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(url)
        peers = [await connected(url) for _ in range(count)]
        detections = []
        for peer in peers:
            before = (await healthz(url))["calls"]
            vanished = time.monotonic()
            await vanish(peer)
            while (await healthz(url))["calls"] >= before:
                await asyncio.sleep(0.02)
            detections.append(time.monotonic() - vanished)
            await peer.pc.close()
        return detections
    finally:
        process.terminate()
        process.wait(30)


async def reconnect_gaps(fake: FakeRealtimeServer, drops: int) -> list[float]:
    port = free_port()
    process = gateway_process(fake, port)
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(url)
        peer = await connected(url)
        gaps = []
        for _ in range(drops):
            mark = len(peer.events)
            dropped = time.monotonic()
            fake.drop_connections()
            await peer.wait_for("session.updated", after=mark, timeout=20)
            gaps.append(time.monotonic() - dropped)
            await asyncio.sleep(0.3)
        await peer.close()
        return gaps
    finally:
        process.terminate()
        process.wait(30)


async def soak(fake: FakeRealtimeServer, calls: int) -> tuple[tuple[float, int, int], tuple[float, int, int], float]:
    port = free_port()
    process = gateway_process(fake, port, "--resume-grace", "0")
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    try:
        await wait_healthy(url)

        async def one(index: int) -> None:
            peer = await connected(url)
            if index % 10 == 9:
                await vanish(peer)
                await asyncio.sleep(4)
                await peer.pc.close()
            elif index % 2:
                await peer.hang_up()
                await peer.close()
            else:
                await peer.close()

        await one(0)  # warm-up
        await asyncio.sleep(1)
        before = resources(process.pid)
        for batch in range(0, calls, 20):
            await asyncio.gather(*(one(i) for i in range(batch, min(calls, batch + 20))))
            if (batch + 20) % 250 == 0:  # is memory flat, or does it grow with every call?
                print(f"  soak: {batch + 20} calls, RSS {resources(process.pid)[0]:.0f} MB", flush=True)
        while (await healthz(url))["calls"]:
            await asyncio.sleep(0.2)
        await asyncio.sleep(2)
        return before, resources(process.pid), time.monotonic() - started
    finally:
        process.terminate()
        process.wait(30)


def resume_after_outages(count: int, outage_s: float = 5.0) -> list[float]:
    """Seconds from the end of a ``outage_s`` network cut to the call running again."""
    from tests.netbed import NetBed

    times = []
    for index in range(count):
        with tempfile.TemporaryDirectory() as results, NetBed(seed=index) as bed:
            bed.set_delay(30, jitter_ms=5)
            server = bed.python(bed.server, "tests.netbed.serve_gateway", "--host", bed.server.address,
                                "--results", results)
            url = json.loads(server.wait_for_line(r'^\{"url"', timeout=60).string)["url"]
            client = bed.python(bed.client, "tests.resume_client", "--url", url)
            client.wait_for_line('"answered"', timeout=60)
            bed.cut(outage_s)
            restored = time.monotonic()
            if client.wait(60) != 0:
                raise RuntimeError(f"the call was not resumed: {client.stderr}")
            server.stop(timeout=30)
            milestones = {line["event"]: line["at"] for line in client.json_lines()}
            times.append(milestones["resumed"] - restored)
    return times


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vanish", type=int, default=20)
    parser.add_argument("--drops", type=int, default=10)
    parser.add_argument("--outages", type=int, default=5)
    parser.add_argument("--soak", type=int, default=1000)
    args = parser.parse_args()
    if args.outages:
        resumes = resume_after_outages(args.outages)
        print(f"resume after a 5 s outage ({len(resumes)} calls): p50 {statistics.median(resumes):.2f} s, "
              f"max {max(resumes):.2f} s", flush=True)
    async with FakeRealtimeServer(Behaviour()) as fake:
        if args.vanish:
            detections = await dead_peer_detection(fake, args.vanish)
            print(f"dead-peer detection ({len(detections)} vanished browsers): p50 "
                  f"{statistics.median(detections):.2f} s, max {max(detections):.2f} s", flush=True)
        if args.drops:
            gaps = await reconnect_gaps(fake, args.drops)
            print(f"upstream reconnect gap ({len(gaps)} killed sessions): p50 {statistics.median(gaps) * 1000:.0f} ms, "
                  f"max {max(gaps) * 1000:.0f} ms", flush=True)
        if args.soak:
            before, after, seconds = await soak(fake, args.soak)
            print(f"soak: {args.soak} calls in {seconds:.0f} s; RSS {before[0]:.0f} → {after[0]:.0f} MB, "
                  f"open fds {before[1]} → {after[1]}, threads {before[2]} → {after[2]}", flush=True)

if __name__ == "__main__":
    asyncio.run(main())
