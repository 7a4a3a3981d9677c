"""The engine tier apart from the media tier: a gateway's UPSTREAM_URL is a pool of Realtime
servers behind the shipped deploy/nginx/realtime-engine.conf (a real nginx).

Two Realtime-protocol servers (tests/fake_upstream.py, the exact wire protocol the offline engine
speaks) stand for two engines; real aiortc peers place the calls. New sessions spread over the
pool; one engine gone, the calls it carried reconnect through nginx to the other and go on.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.cluster.bed import ROOT, _wait_port, free_port
from tests.conftest import GatewayFactory
from tests.fake_upstream import Behaviour, FakeRealtimeServer
from tests.peers import ClientPeer

ENGINE_CONF = ROOT / "deploy" / "nginx" / "realtime-engine.conf"


async def start_nginx(workdir: Path, engines: list[int]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    conf = workdir / "nginx"
    (conf / "realtime-engine").mkdir(parents=True)
    (conf / "realtime-engine" / "engines.conf").write_text(
        "".join(f"server 127.0.0.1:{p} max_fails=0;\n" for p in engines))
    shipped = ENGINE_CONF.read_text().replace("/etc/nginx/realtime-engine/", f"{conf}/realtime-engine/")
    shipped = shipped.replace("listen 8765;", f"listen 127.0.0.1:{port};")
    assert str(port) in shipped and str(conf) in shipped, "the shipped engine pool file changed shape"
    (conf / "realtime-engine.conf").write_text(shipped)
    temp = "".join(f"{name}_temp_path {conf / name};\n" for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (conf / "nginx.conf").write_text(f"worker_processes 1;\npid {conf}/nginx.pid;\nerror_log {conf}/error.log warn;\n"
                                     f"events {{ worker_connections 256; }}\n"
                                     f"http {{ access_log off;\n{temp}include {conf}/realtime-engine.conf;\n}}\n")
    process = subprocess.Popen(["nginx", "-c", str(conf / "nginx.conf"), "-p", str(conf), "-g", "daemon off;"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    await asyncio.to_thread(_wait_port, "127.0.0.1", port)
    return process, port


@pytest.fixture
async def pool(tmp_path: Path) -> AsyncIterator[tuple[list[FakeRealtimeServer], str]]:
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        pytest.skip("nginx is not installed (scripts/setup_cluster.sh)")
    engines = [FakeRealtimeServer(Behaviour()), FakeRealtimeServer(Behaviour())]
    for engine in engines:
        await engine.__aenter__()
    process, port = await start_nginx(tmp_path, [e.port for e in engines])
    try:
        yield engines, f"ws://127.0.0.1:{port}/v1/realtime"
    finally:
        process.terminate()
        process.wait(10)
        for engine in engines:
            if engine.port:
                await engine.__aexit__(None, None, None)


async def talking(peer: ClientPeer, timeout: float = 15.0) -> None:
    after = len(peer.events)
    peer.send({"type": "session.update", "session": {"type": "realtime", "instructions": "Olá."}})
    await peer.wait_for("session.updated", after=after, timeout=timeout)


async def test_sessions_spread_over_the_pool_and_survive_an_engine(
        make_gateway: GatewayFactory, pool: tuple[list[FakeRealtimeServer], str]) -> None:
    engines, url = pool
    gateway = await make_gateway(upstream_url=url, upstream_reconnect_timeout_s=20.0)
    peers: list[ClientPeer] = []
    try:
        for _ in range(4):
            peer = ClientPeer(gateway.url)
            await peer.connect()
            await peer.channel_open()
            await peer.wait_for("session.created")
            peers.append(peer)
        assert [len(e.sessions) for e in engines] == [2, 2]  # least_conn: long sockets, evenly
        gone, left = engines
        await gone.__aexit__(None, None, None)
        gone.port = 0
        for peer in peers:  # the two calls it carried reconnected to the other engine
            await talking(peer)
        assert len(left.sessions) == 4
        late = ClientPeer(gateway.url)  # a new call: nginx skips the engine that refuses connections
        peers.append(late)
        await late.connect()
        await late.channel_open()
        await late.wait_for("session.created")
        assert len(left.sessions) == 5
    finally:
        await asyncio.gather(*(p.close() for p in peers))
