"""A sideband reaching an instance that does not hold its call is piped to the owner over HTTP.

Two gateway processes on loopback that know each other statically (``INSTANCES``, no Redis),
as behind a front that does not route by call id: the browser (a real aiortc peer) calls gw-a,
the backend (the official ``openai`` client, or a bare aiohttp WebSocket where close codes are
what matters) connects to gw-b. tests/cluster does the same through a real
nginx round-robin front across network namespaces.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from openai import AsyncOpenAI

from tests.conftest import free_port, wait_healthy
from tests.fake_upstream import FakeRealtimeServer
from tests.server.test_sideband import AUTH, KEY, UPGRADE, RawSideband, browser, call_id, closed_with, handshake, open_fds

ROOT = Path(__file__).resolve().parents[2]
SECRET = "instances-test-secret-0123456789abcdef"


@dataclass
class Pair:
    owner: str  # gw-a: the browser's call lives here
    other: str  # gw-b: the backend connects here
    pids: tuple[int, int]
    dead_instance: str  # named in INSTANCES, nothing listens there


@pytest.fixture
async def pair(fake_upstream: FakeRealtimeServer) -> AsyncIterator[Pair]:
    ports = {"gw-a": free_port(), "gw-b": free_port(), "gw-c": free_port()}
    instances = ",".join(f"{name}=http://127.0.0.1:{port}" for name, port in ports.items())
    processes = [subprocess.Popen(
        [sys.executable, "-m", "gateway", "--workers", "1", "--upstream", "url", "--upstream-url", fake_upstream.url,
         "--openai-api-key", "sk-test-upstream-key", "--host", "127.0.0.1", "--port", str(ports[name]),
         "--instance-id", name, "--instances", instances, "--gateway-secret", SECRET, "--api-keys", KEY,
         "--trusted-proxies", "127.0.0.1/32", "--rate-limit", "100000", "--shutdown-drain-timeout", "1",
         "--event-loop", "asyncio"], cwd=ROOT) for name in ("gw-a", "gw-b")]
    urls = [f"http://127.0.0.1:{ports[name]}" for name in ("gw-a", "gw-b")]
    try:
        await asyncio.gather(*(wait_healthy(url) for url in urls))
        yield Pair(urls[0], urls[1], (processes[0].pid, processes[1].pid), "gw-c")
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            assert process.wait(30) == 0


async def test_openai_client_on_another_instance_drives_the_call(pair: Pair) -> None:
    peer = await browser(pair.owner)
    await peer.wait_for("session.created")
    call = call_id(peer)
    assert "_gw-a_" in call
    client = AsyncOpenAI(api_key=KEY, base_url=f"{pair.other}/v1")
    connection = await client.realtime.connect(call_id=call).enter()
    try:
        assert connection._connection.response.headers.get("Via") == "1.1 gateway-gw-b"  # piped by gw-b
        first = await connection.recv()
        assert first.type == "session.created"
        await connection.session.update(session={"type": "realtime", "instructions": "Só português."})
        updated = await connection.recv()
        assert updated.type == "session.updated" and updated.session.instructions == "Só português."
        shown = await peer.wait_for("session.updated")
        assert shown["event_id"] == updated.event_id  # the browser's call took it
        # The call ends on gw-a: the backend's connection on gw-b closes with the owner's code and reason.
        assert await peer.hang_up() == 204
        assert await closed_with(connection) == (1000, "call ended: client_hangup")
    finally:
        await connection.close()
        await peer.close()


async def test_refusals_and_an_owner_that_is_gone(pair: Pair) -> None:
    peer = await browser(pair.owner)
    try:
        call = call_id(peer)
        status, body = await handshake(pair.other, f"?call_id={call}", {**UPGRADE, "Authorization": "Bearer nope"})
        assert (status, body["error"]["code"]) == (401, "invalid_api_key")  # refused before any hop
        missing = call.replace(call.rsplit("_", 1)[-1], "0" * len(call.rsplit("_", 1)[-1]))
        status, body = await handshake(pair.other, f"?call_id={missing}", {**UPGRADE, **AUTH})
        assert (status, body["error"]["code"]) == (404, "call_not_found")  # the owner's answer, passed on
        gone = call.replace("_gw-a_", f"_{pair.dead_instance}_")
        status, body = await handshake(pair.other, f"?call_id={gone}", {**UPGRADE, **AUTH})
        assert (status, body["error"]["code"]) == (503, "instance_unavailable")
        unknown = call.replace("_gw-a_", "_gw-zz_")
        status, body = await handshake(pair.other, f"?call_id={unknown}", {**UPGRADE, **AUTH})
        assert (status, body["error"]["code"]) == (404, "call_not_found")
    finally:
        await peer.close()


async def test_closing_the_backend_end_lets_go_on_both_instances(pair: Pair) -> None:
    peer = await browser(pair.owner)
    await peer.wait_for("session.created")
    try:
        warm = await RawSideband.attach(pair.other, call_id(peer))
        await warm.next("session.created")
        await warm.aclose()
        await asyncio.sleep(0.5)
        before = [open_fds(pid) for pid in pair.pids]
        for _ in range(15):
            sideband = await RawSideband.attach(pair.other, call_id(peer))
            assert (await sideband.next())["type"] == "session.created"
            await sideband.aclose()
        for _ in range(50):
            after = [open_fds(pid) for pid in pair.pids]
            if all(a <= b + 2 for a, b in zip(after, before, strict=True)):
                break
            await asyncio.sleep(0.1)
        assert all(a <= b + 2 for a, b in zip(after, before, strict=True)), (before, after)
        # A new backend attaches: the owner had let go of every one before it (none is replaced).
        last = await RawSideband.attach(pair.other, call_id(peer))
        assert (await last.next())["type"] == "session.created"
        assert await peer.hang_up() == 204
        assert await last.closed() == (1000, "call ended: client_hangup")
        await last.aclose()
    finally:
        await peer.close()


def test_no_redis_import_without_redis_url() -> None:
    """A gateway without REDIS_URL never loads the Redis client (it may not even be installed)."""
    code = ("import sys; from gateway.config import load_config; from gateway.server.signaling import create_app; "
            "create_app(load_config(['--instance-id', 'gw-a', '--instances', 'gw-b=http://10.0.0.2:8000'], "
            "environ={})); print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'redis')))")
    out = subprocess.run([sys.executable, "-c", "import json; " + code], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def sockets_to(port: int) -> int:
    """TCP sockets of this host (any state, TIME_WAIT included) whose remote end is ``port``."""
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(int(line.split()[2].rsplit(":", 1)[1], 16) == port for line in lines)


async def test_forwarded_requests_reuse_pooled_connections(pair: Pair) -> None:
    """gw-b forwards a call's trickle to gw-a over its one pooled client: 30 requests, not 30
    connections opened and left in TIME_WAIT."""
    import aiohttp

    peer = await browser(pair.owner)
    try:
        owner_port = int(pair.owner.rsplit(":", 1)[1])
        fragment = "a=ice-ufrag:x\r\na=ice-pwd:y\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=end-of-candidates\r\n"
        async with aiohttp.ClientSession() as http:
            before = sockets_to(owner_port)
            for _ in range(30):
                async with http.patch(f"{pair.other}{peer.location}", data=fragment,
                                      headers={"Content-Type": "application/trickle-ice-sdpfrag"}) as response:
                    assert response.status == 204, await response.text()
            after = sockets_to(owner_port)
        assert after - before <= 2, (before, after)
    finally:
        await peer.close()
