"""Several gateway processes on one port: every request about a call reaches the process holding it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import free_port, wait_healthy
from tests.fake_upstream import FakeRealtimeServer
from tests.peers import ClientPeer
from tests.server.test_call import speak
from tests.server.test_soak import vanish

ROOT = Path(__file__).resolve().parents[2]


async def start_workers(upstream: FakeRealtimeServer, runtime_dir: Path) -> tuple[str, subprocess.Popen[bytes]]:
    """``python -m gateway --workers 2``, once both workers listen: (url, supervisor process)."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "gateway", "--workers", "2", "--upstream", "url",
                                "--upstream-url", upstream.url, "--openai-api-key", "sk-test-upstream-key",
                                "--host", "127.0.0.1", "--port", str(port), "--runtime-dir", str(runtime_dir),
                                "--rate-limit", "100000", "--resume-grace", "30", "--shutdown-drain-timeout", "1"],
                               cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    await wait_healthy(url)
    await asyncio.sleep(0.5)  # both workers listening
    return url, process


@pytest.fixture
async def two_workers(fake_upstream: FakeRealtimeServer, tmp_path: Path) -> AsyncIterator[str]:
    url, process = await start_workers(fake_upstream, tmp_path)
    try:
        yield url
    finally:
        process.terminate()
        assert process.wait(40) == 0


async def test_calls_spread_and_follow_up_requests_find_their_worker(two_workers: str) -> None:
    peers = [ClientPeer(two_workers) for _ in range(8)]
    try:
        await asyncio.gather(*(p.connect() for p in peers))
        workers = {p.location.split("_")[1] for p in peers}
        assert workers == {"w0", "w1"}, [p.location for p in peers]  # the kernel spread the calls
        for peer in peers:  # each minted and answered by the same worker
            assert peer.secret["value"].split("_")[1] == peer.location.split("/")[-1].split("_")[1]
        await asyncio.gather(*(p.channel_open() for p in peers))
        await speak(peers[0])
        await peers[0].wait_for("output_audio_buffer.stopped", timeout=15)
        async with aiohttp.ClientSession() as http:  # one connection lands on one worker…
            async with http.get(f"{two_workers}/metrics") as response:
                text = await response.text()
        assert 'gateway_active_calls{worker="0"}' in text and 'gateway_active_calls{worker="1"}' in text
        statuses = [await p.hang_up() for p in peers]  # …and every DELETE still reaches its call
        assert statuses == [204] * 8
    finally:
        await asyncio.gather(*(p.close() for p in peers))


async def resume_when_noticed(url: str, token: str, timeout: float = 8.0) -> ClientPeer:
    """Offer new connections with ``token`` until the gateway has noticed the old one is gone
    (409 ``call_not_suspended`` until then), as the web module does."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        peer = ClientPeer(url)
        status = await peer.resume(token)
        if status == 201:
            return peer
        await peer.pc.close()
        assert status == 409 and asyncio.get_running_loop().time() < deadline, status
        await asyncio.sleep(0.25)


async def test_resume_reaches_the_worker_holding_the_call(two_workers: str) -> None:
    first = ClientPeer(two_workers)
    await first.connect()
    second = ClientPeer(two_workers)
    try:
        for _ in range(4):  # whichever worker the new connection lands on
            await first.channel_open()
            await vanish(first)
            await first.pc.close()
            second = await resume_when_noticed(two_workers, first.resume_token)
            first, second = second, ClientPeer(two_workers)
        await first.channel_open()
        await speak(first)
        await first.wait_for("output_audio_buffer.stopped", timeout=15)
    finally:
        await first.close()
        await second.pc.close()


def _children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def test_workers_end_with_a_killed_supervisor(fake_upstream: FakeRealtimeServer, tmp_path: Path) -> None:
    """SIGKILL on the supervisor (OOM killer, kill -9): its workers tell their calls and exit,
    instead of holding the port and the calls as orphans."""
    url, process = await start_workers(fake_upstream, tmp_path)
    workers = _children(process.pid)
    peer = ClientPeer(url)
    try:
        assert len(workers) == 2
        await peer.connect()
        await peer.channel_open()
        process.kill()
        process.wait(10)
        error = await peer.wait_for("error", timeout=10)
        assert error["error"]["code"] == "gateway_shutting_down"
        for _ in range(100):
            if not any(_alive(pid) for pid in workers):
                break
            await asyncio.sleep(0.1)
        assert not any(_alive(pid) for pid in workers), "orphaned workers still running"
        with pytest.raises(aiohttp.ClientConnectionError):  # nobody holds the port any more
            async with aiohttp.ClientSession() as http, http.get(f"{url}/healthz"):
                pass
    finally:
        await peer.close()
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
