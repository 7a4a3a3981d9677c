"""Limits hold for the whole gateway, not per worker: two workers do not give twice the calls,
twice the rate or twice a client's share, whichever worker each request lands on."""

from __future__ import annotations

import asyncio
import collections
from pathlib import Path

from tests.fake_upstream import FakeRealtimeServer
from tests.peers import ClientPeer
from tests.server.page_client import PageClient, start_gateway_process, worker_of

PROXY = ("--trusted-proxies", "127.0.0.1/32")  # the tests play a proxy naming each client


async def _call(page: PageClient, peers: list[ClientPeer], url: str) -> tuple[int, str | None, str]:
    """One call attempt: (status, error code, worker that minted the secret)."""
    peer = ClientPeer(url)
    minted, answer, _ = await page.start_call(peer)
    if answer.status == 201:
        peers.append(peer)
    else:
        await peer.pc.close()
    worker = worker_of(peer.secret["value"]) if minted.status == 200 else "-"
    return answer.status, answer.code, worker


async def _refusals_on_both_workers(page: PageClient, peers: list[ClientPeer], url: str,
                                    attempts: int = 16) -> dict[str, collections.Counter[str]]:
    """Call attempts until both workers have refused one (or ``attempts`` ran out)."""
    outcomes: dict[str, collections.Counter[str]] = {"w0": collections.Counter(), "w1": collections.Counter()}
    for _ in range(attempts):
        status, code, worker = await _call(page, peers, url)
        outcomes.setdefault(worker, collections.Counter())[f"{status} {code}"] += 1
        if all(sum(c.values()) >= 2 for c in outcomes.values()):
            break
    return outcomes


async def _until_admitted(page: PageClient, peers: list[ClientPeer], url: str, timeout: float = 8.0) -> None:
    """A freed slot is free once the call has ended (asynchronously after the DELETE)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while (await _call(page, peers, url))[0] != 201:
        assert asyncio.get_running_loop().time() < deadline, "the freed slot was never given out"
        await asyncio.sleep(0.2)


async def test_max_calls_holds_across_workers(fake_upstream: FakeRealtimeServer, tmp_path: Path) -> None:
    gateway = await start_gateway_process(fake_upstream, tmp_path, "--max-calls", "3", "--rate-limit", "100000",
                                          "--max-calls-per-client", "0")
    page = PageClient(gateway.url)
    peers: list[ClientPeer] = []
    try:
        first = [await _call(page, peers, gateway.url) for _ in range(3)]
        assert [status for status, _, _ in first] == [201, 201, 201], first
        outcomes = await _refusals_on_both_workers(page, peers, gateway.url)
        assert len(peers) == 3, f"more than MAX_CALLS=3 calls admitted: {outcomes}"
        for worker in ("w0", "w1"):  # the 4th call is refused on whichever worker it lands
            assert outcomes[worker] and set(outcomes[worker]) == {"503 at_capacity"}, outcomes
        assert (await page.hang_up(peers[0].location or "")).status == 204
        await _until_admitted(page, peers, gateway.url)
        assert len(peers) == 4  # three live calls again, one of them new
    finally:
        await asyncio.gather(*(peer.close() for peer in peers))
        assert gateway.stop() == 0


async def test_rate_limit_holds_across_workers(fake_upstream: FakeRealtimeServer, tmp_path: Path) -> None:
    """RATE_LIMIT=6 per minute: a burst of 5, then 429 — not 5 per worker."""
    gateway = await start_gateway_process(fake_upstream, tmp_path, "--rate-limit", "6")
    try:
        page = PageClient(gateway.url)
        answers = [await page.mint() for _ in range(14)]
        minted = [worker_of(a.json()["value"]) for a in answers if a.status == 200]
        refused = [a for a in answers if a.status != 200]
        assert 5 <= len(minted) <= 6, f"{len(minted)} secrets minted: {collections.Counter(minted)}"
        assert all(a.status == 429 and a.code == "rate_limited" and int(a.headers["Retry-After"]) >= 1
                   for a in refused)
        other = PageClient(gateway.url, headers={"X-Forwarded-For": "198.51.100.9"})  # not a trusted proxy:
        assert (await other.mint()).status == 429  # the socket peer is the client, whatever it claims
    finally:
        assert gateway.stop() == 0


async def test_max_calls_per_client_holds_across_workers(fake_upstream: FakeRealtimeServer, tmp_path: Path) -> None:
    """MAX_CALLS_PER_CLIENT=2: the third concurrent call of one client is 429 ``too_many_calls``
    on either worker; another client still gets in; a hang-up gives the client its share back."""
    gateway = await start_gateway_process(fake_upstream, tmp_path, "--max-calls-per-client", "2",
                                          "--rate-limit", "100000", *PROXY)
    alice = PageClient(gateway.url, headers={"X-Forwarded-For": "198.51.100.1"})
    bob = PageClient(gateway.url, headers={"X-Forwarded-For": "198.51.100.2"})
    peers: list[ClientPeer] = []
    try:
        first = [await _call(alice, peers, gateway.url) for _ in range(2)]
        assert [status for status, _, _ in first] == [201, 201], first
        outcomes = await _refusals_on_both_workers(alice, peers, gateway.url)
        assert len(peers) == 2, f"alice got more than 2 calls: {outcomes}"
        for worker in ("w0", "w1"):
            assert outcomes[worker] and set(outcomes[worker]) == {"429 too_many_calls"}, outcomes
        assert (await _call(bob, peers, gateway.url))[0] == 201  # another client is not starved
        assert (await alice.hang_up(peers[0].location or "")).status == 204
        await _until_admitted(alice, peers, gateway.url)
    finally:
        await asyncio.gather(*(peer.close() for peer in peers))
        assert gateway.stop() == 0
