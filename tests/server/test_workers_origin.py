"""Every request of a call works on every worker, the way a page makes them: its Origin on each,
each on a fresh connection. What the first worker verified (origin, client identity) survives
forwarding, and nothing a client sends can pass for it."""

from __future__ import annotations

import asyncio
import collections
import random
from pathlib import Path

from tests.fake_upstream import FakeRealtimeServer
from tests.peers import ClientPeer
from tests.server.page_client import GatewayProcess, PageClient, start_gateway_process, worker_of

CALLS = 12


async def test_same_origin_calls_work_whichever_worker_each_request_lands_on(two_worker_gateway: GatewayProcess) -> None:
    page = PageClient(two_worker_gateway.url)  # the reference page, served by the gateway itself
    refused: collections.Counter[str] = collections.Counter()
    workers_seen: set[tuple[str, str]] = set()  # (minting/owning worker, step) pairs that were exercised
    for _ in range(CALLS):
        peer = ClientPeer(two_worker_gateway.url)
        try:
            minted, answer, held = await page.start_call(peer, hold_back_candidate=True)
            if minted.status != 200:
                refused[f"mint {minted.status} {minted.code}"] += 1
                continue
            if answer.status != 201:
                refused[f"offer {answer.status} {answer.code}"] += 1
                continue
            assert peer.location is not None and held is not None
            workers_seen.add((worker_of(peer.secret["value"]), "offer"))
            trickled = await page.trickle(peer.location, held)
            if trickled.status != 204:
                refused[f"patch {trickled.status} {trickled.code}"] += 1
            await peer.channel_open()
            await peer.wait_for("session.created")
            hung_up = await page.hang_up(peer.location)
            if hung_up.status != 204:
                refused[f"delete {hung_up.status} {hung_up.code}"] += 1
        finally:
            await peer.close()
    assert not refused, f"refused on the page's own origin: {dict(refused)} of {CALLS} calls"
    assert {w for w, _ in workers_seen} == {"w0", "w1"}  # calls were made on both workers


async def test_spoofed_gateway_headers_do_not_change_the_client_identity(fake_upstream: FakeRealtimeServer,
                                                                         tmp_path: Path) -> None:
    """With RATE_LIMIT=6 (a burst of 5) one client gets about 5 call attempts through, whichever
    worker owns the token it names and whatever ``X-Gateway-*`` headers it invents."""
    gateway = await start_gateway_process(fake_upstream, tmp_path, "--rate-limit", "6")
    try:
        statuses: collections.Counter[int] = collections.Counter()
        rng = random.Random(13)
        for attempt in range(24):
            fake = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
            spoofed = {"x-gateway-client-ip": fake, "X-GATEWAY-CLIENT": fake,
                       "X-Gateway-Forwarded": "1"} if attempt % 2 else {"X-Gateway-Client-Ip": fake}
            page = PageClient(gateway.url, origin="", headers=spoofed)  # a script, not a page
            # A token naming worker 0 or 1: whoever receives the request forwards it to that worker.
            answer = await page.offer("v=0\r\n", f"ek_w{attempt % 2}_{'x' * 43}")
            statuses[answer.status] += 1
            assert answer.status in (401, 429), (answer.status, answer.text)
        assert statuses[401] <= 6, dict(statuses)  # the burst, plus at most one refilled token
        assert statuses[429] >= 18, dict(statuses)
    finally:
        assert gateway.stop() == 0


async def test_many_calls_at_once_from_the_page(two_worker_gateway: GatewayProcess) -> None:
    """Concurrent calls (connection pools of several tabs) land on both workers and all connect."""
    page = PageClient(two_worker_gateway.url)
    peers = [ClientPeer(two_worker_gateway.url) for _ in range(6)]
    try:
        results = await asyncio.gather(*(page.start_call(peer) for peer in peers))
        assert [answer.status for _, answer, _ in results] == [201] * len(peers), [a.text for _, a, _ in results]
        await asyncio.gather(*(peer.channel_open() for peer in peers))
        hung_up = await asyncio.gather(*(page.hang_up(peer.location or "") for peer in peers))
        assert [answer.status for answer in hung_up] == [204] * len(peers)
    finally:
        await asyncio.gather(*(peer.close() for peer in peers))
