"""Several gateway processes on one port: every request about a call reaches the process holding
it, and a worker that dies is replaced while the others' calls go on."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import IO, TypeVar

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.audio_tools import pitch, rms
from tests.fake_upstream import FakeRealtimeServer
from tests.peers import ClientPeer
from tests.server.page_client import PageClient, start_gateway_process, worker_of
from tests.server.test_call import turn, voice_of
from tests.server.test_soak import vanish

ROOT = Path(__file__).resolve().parents[2]


async def start_workers(upstream: FakeRealtimeServer, runtime_dir: Path, *flags: str,
                        stderr: IO[bytes] | None = None) -> tuple[str, subprocess.Popen[bytes]]:
    """``python -m gateway --workers 2``, once both workers listen: (url, supervisor process)."""
    gateway = await start_gateway_process(upstream, runtime_dir, "--rate-limit", "100000", "--resume-grace", "30",
                                          *flags, stderr=stderr)
    return gateway.url, gateway.process


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
        await turn(peers[0])
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
        await turn(first)
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


def _worker_pids(supervisor: int) -> dict[int, int]:
    """Worker index → pid of the supervisor's live workers (from their command lines)."""
    found: dict[int, int] = {}
    for pid in _children(supervisor):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:
            continue
        if b"--worker-index" in argv and _alive(pid):
            found[int(argv[argv.index(b"--worker-index") + 1])] = pid
    return found


async def _restarts(url: str) -> dict[str, float]:
    """``gateway_worker_restarts_total`` by worker, from one loopback scrape."""
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as response:
        assert response.status == 200
        text = await response.text()
    return {sample.labels["worker"]: sample.value for family in text_string_to_metric_families(text)
            for sample in family.samples if sample.name == "gateway_worker_restarts_total"}


T = TypeVar("T")


async def _eventually(probe: Callable[[], Awaitable[T | None]], timeout: float = 20.0) -> T:
    """``await probe()`` until it returns something truthy; that."""
    deadline = time.monotonic() + timeout
    while True:
        result = await probe()
        if result:
            return result
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.2)


async def _call_on(url: str, worker: str, *, tries: int = 40) -> ClientPeer:
    """A call made as the page makes it (fresh connections, its Origin), minted until the secret
    names ``worker`` — the worker that then holds the call."""
    page = PageClient(url)
    for _ in range(tries):
        minted = await page.mint()
        assert minted.status == 200, minted.text
        if worker_of(minted.json()["value"]) != worker:
            continue
        peer = ClientPeer(url)
        _, answer, _ = await page.start_call(peer, minted=minted)
        assert answer.status == 201, answer.text
        await peer.channel_open()
        return peer
    raise AssertionError(f"no client secret from {worker} in {tries} tries")


def _reply_heard(peer: ClientPeer, since: float, fake_upstream: FakeRealtimeServer) -> None:
    """The model's reply reached ``peer`` after ``since``: loud, at the reply's pitch."""
    reply = voice_of(peer.heard_between(since))
    assert rms(reply) > 1000
    assert pitch(reply, 48000) == pytest.approx(fake_upstream.behaviour.reply_pitch_hz, rel=0.03)


async def test_a_killed_worker_is_replaced_while_the_other_workers_calls_go_on(
        fake_upstream: FakeRealtimeServer, tmp_path: Path) -> None:
    """SIGKILL on one worker mid-call: its call is lost, the other worker's call keeps its audio,
    the supervisor starts a new worker 1 and counts it, and new calls reach the new worker."""
    url, process = await start_workers(fake_upstream, tmp_path, "--worker-restart-backoff", "0.5")
    peers: list[ClientPeer] = []
    try:
        survivor = await _call_on(url, "w0")
        lost = await _call_on(url, "w1")
        peers += [survivor, lost]
        assert await _restarts(url) == {"0": 0, "1": 0}
        await turn(survivor)
        victim = _worker_pids(process.pid)[1]

        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        await turn(survivor, timeout=20)  # the call on worker 0 goes on: speech in, the reply's audio out
        _reply_heard(survivor, killed_at, fake_upstream)
        assert process.poll() is None, "the gateway stopped with its worker"

        replacement = await _eventually(lambda: _new_worker(process.pid, victim))
        assert await _eventually(lambda: _restarts_are(url, {"0": 0, "1": 1}))
        quiet_from = time.monotonic()
        await asyncio.sleep(1.0)
        assert len(lost.heard_between(quiet_from)) == 0, "the killed worker's call still sends audio"
        resumed = ClientPeer(url)  # that call is gone with its worker: its resume token is refused
        peers.append(resumed)
        assert await resumed.resume(lost.resume_token or "") == 401

        fresh = await _call_on(url, "w1")  # the new worker 1 takes calls, from fresh connections
        peers.append(fresh)
        _reply_heard(fresh, await turn(fresh), fake_upstream)
        assert _worker_pids(process.pid)[1] == replacement
        assert not survivor.of_type("error"), survivor.of_type("error")  # nothing of this reached worker 0's caller
        statuses = [(await PageClient(url).hang_up(p.location or "")).status for p in (survivor, fresh)]
        assert statuses == [204, 204]
    finally:
        await asyncio.gather(*(p.close() for p in peers))
        process.terminate()
        assert process.wait(40) == 0


async def _new_worker(supervisor: int, old: int) -> int | None:
    pid = _worker_pids(supervisor).get(1)
    return pid if pid not in (None, old) else None


async def _gone(runtime_parent: Path, name: str) -> bool:
    """Whether no file ``name`` is left in the gateway's private directory under ``runtime_parent``."""
    return not list(runtime_parent.glob(f"gateway-*/{name}"))


async def _restarts_are(url: str, expected: dict[str, float]) -> bool:
    try:
        return await _restarts(url) == expected
    except aiohttp.ClientError:
        return False


async def test_a_crash_loop_stops_the_gateway_with_a_clear_log(fake_upstream: FakeRealtimeServer,
                                                               tmp_path: Path) -> None:
    """More deaths within WORKER_RESTART_WINDOW than WORKER_MAX_RESTARTS: the supervisor gives up,
    stops the other worker (its call is told) and exits 1 saying why; nothing is left running."""
    log_path = tmp_path / "gateway.log"
    with log_path.open("wb") as log:
        url, process = await start_workers(fake_upstream, tmp_path, "--worker-restart-backoff", "0.2",
                                           "--worker-max-restarts", "1", "--worker-restart-window", "60", stderr=log)
    peer = await _call_on(url, "w0")
    try:
        first = _worker_pids(process.pid)[1]
        os.kill(first, signal.SIGKILL)  # replaced (1 allowed)…
        second = await _eventually(lambda: _new_worker(process.pid, first))
        survivor = _worker_pids(process.pid)[0]
        os.kill(second, signal.SIGKILL)  # …and dead again: a crash loop
        assert await asyncio.to_thread(process.wait, 40) == 1
        error = await peer.wait_for("error", timeout=10)  # worker 0 drained: its caller was told
        assert error["error"]["code"] == "gateway_shutting_down"
        assert not _alive(survivor) and not _alive(second)
    finally:
        await peer.close()
        if process.poll() is None:
            process.kill()
    log_text = log_path.read_text()
    assert f"worker 1 (pid {first}) died (killed by SIGKILL)" in log_text
    assert "a new worker 1 starts in 0.2 s" in log_text
    assert f"worker 1 (pid {second}) died (killed by SIGKILL): 2 worker death(s) within 60 s" in log_text
    assert "crash loop, stopping the gateway" in log_text
    assert "gateway stopped: workers kept dying" in log_text
    with pytest.raises(aiohttp.ClientConnectionError):  # nobody holds the port any more
        async with aiohttp.ClientSession() as http, http.get(f"{url}/healthz"):
            pass


async def test_sigterm_while_a_worker_waits_to_be_replaced(fake_upstream: FakeRealtimeServer, tmp_path: Path) -> None:
    """SIGTERM during a replacement's backoff: no new worker starts, the live one drains its call
    (telling it) and the gateway exits 0 at once, not after the backoff."""
    url, process = await start_workers(fake_upstream, tmp_path, "--worker-restart-backoff", "30")
    peer = await _call_on(url, "w0")
    try:
        os.kill(_worker_pids(process.pid)[1], signal.SIGKILL)
        await _eventually(lambda: _gone(tmp_path, "worker-1.sock"))  # the supervisor saw it die
        assert await _restarts(url) == {"0": 0}
        stopped_at = time.monotonic()
        process.terminate()
        assert await asyncio.to_thread(process.wait, 40) == 0
        assert time.monotonic() - stopped_at < 15  # drained (1 s), not waiting out the 30 s backoff
        error = await peer.wait_for("error", timeout=10)
        assert error["error"]["code"] == "gateway_shutting_down"
    finally:
        await peer.close()
        if process.poll() is None:
            process.kill()
