"""Figures: call set-up through nginx vs straight to an instance, and the forwarding hop
(bench/cluster.py runs them after its capacity steps).

    sudo .venv/bin/python -m tests.cluster.figures [--calls 10]

Set-up = mint + offer until the 201 answer (what a page waits for before ICE), with a real aiortc
peer; the hop = PATCH (trickle) to the owner vs to another instance that forwards it.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from tests.cluster.bed import ClusterBed, free_port
from tests.cluster.conftest import ThreadedUpstream
from tests.cluster.test_cluster import hang_up_all, mint, offer, owner, request
from tests.peers import ClientPeer

FRAGMENT = "a=ice-ufrag:x\r\na=ice-pwd:y\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=end-of-candidates\r\n"


async def setup_ms(base: str) -> float:
    peer = ClientPeer(base)
    started = time.perf_counter()
    status, text = await offer(peer, base, await mint(base))
    elapsed = (time.perf_counter() - started) * 1000
    assert status == 201, text
    await hang_up_all(base, [peer])
    return elapsed


async def measure(bed: ClusterBed, calls: int) -> None:
    """Rounds that take each way once, in turn (after one warm-up each), so the machine's drift
    over the run weighs on every way alike."""
    instance = bed.instances[1]
    ways = (("direct", instance.url), ("nginx", bed.front), ("round robin", bed.round_robin))
    for _, base in ways:
        await setup_ms(base)
    times: dict[str, list[float]] = {name: [] for name, _ in ways}
    for _ in range(calls):
        for name, base in ways:
            times[name].append(await setup_ms(base))
    for name, values in times.items():
        print(f"set-up {name:12s} median {statistics.median(values):6.1f} ms  p90 "
              f"{sorted(values)[int(len(values) * 0.9) - 1]:6.1f} ms  (n={calls})")
    peer = ClientPeer(bed.front)
    status, text = await offer(peer, bed.front, await mint(bed.front))
    assert status == 201, text
    home = next(i for i in bed.instances if i.name == owner(peer))
    other = next(i for i in bed.instances if i.name != home.name)
    hops = (("owner", home.url), ("via nginx", bed.front), ("forwarded", other.url))
    patches: dict[str, list[float]] = {name: [] for name, _ in hops}
    for _ in range(calls * 3):
        for name, base in hops:
            started = time.perf_counter()
            status, _, _ = await request("PATCH", f"{base}{peer.location}", data=FRAGMENT,
                                         headers={"Content-Type": "application/trickle-ice-sdpfrag"})
            patches[name].append((time.perf_counter() - started) * 1000)
            assert status == 204
    for name, values in patches.items():
        print(f"PATCH  {name:12s} median {statistics.median(values):6.1f} ms  (n={len(values)})")
    await hang_up_all(bed.front, [peer])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=10)
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="gateway-figures-") as workdir:
        bed = ClusterBed(Path(workdir), 3, flags=("--rate-limit", "100000"), two_workers_first=False)
        bed.upstream_url = f"ws://{bed.bridge_address}:{port}/v1/realtime"
        bed.open_network()
        try:
            with ThreadedUpstream(bed.bridge_address, port):
                bed.open_services()
                asyncio.run(measure(bed, args.calls))
        finally:
            bed.close()


if __name__ == "__main__":
    main()
