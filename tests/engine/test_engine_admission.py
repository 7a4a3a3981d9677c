"""Who may open an engine session: the key, no browsers, a cap — on the real engine process, and
the gateway starting its own engine with a key that never appears on a command line."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus

from tests.conftest import ENGINE_TEST_KEY, free_port, wait_healthy
from tests.peers import ClientPeer

from .client import EngineClient

pytestmark = pytest.mark.engine
ROOT = Path(__file__).resolve().parents[2]
MAX_SESSIONS = 8  # the engine's default ENGINE_MAX_SESSIONS


async def refused(url: str, key: str | None, **options: object) -> tuple[int, dict[str, object], str | None]:
    with pytest.raises(InvalidStatus) as caught:
        client = await EngineClient.open(url, key, **options)
        await client.close()
    response = caught.value.response
    return response.status_code, json.loads(response.body or b"{}"), response.headers.get("Retry-After")


async def test_no_key_or_a_wrong_one_is_refused(engine_url: str) -> None:
    for key in (None, "engine-test-key-0123456788", ENGINE_TEST_KEY + "x", "x"):
        status, body, _ = await refused(engine_url, key)
        assert status == 401 and body["error"]["code"] == "invalid_api_key"  # type: ignore[index]
    client = await EngineClient.open(engine_url, ENGINE_TEST_KEY)
    assert (await client.wait_for("session.created"))["session"]["model"] == "local"
    await client.close()


async def test_browsers_are_refused_even_with_the_key(engine_url: str) -> None:
    for origin in ("http://localhost:5000", "https://evil.example", "null"):
        status, body, _ = await refused(engine_url, ENGINE_TEST_KEY, origin=origin)
        assert status == 403 and body["error"]["code"] == "origin_not_allowed"  # type: ignore[index]


async def test_sessions_beyond_the_cap_get_503_until_one_ends(engine_url: str) -> None:
    clients = [await EngineClient.open(engine_url, ENGINE_TEST_KEY) for _ in range(MAX_SESSIONS)]
    try:
        for client in clients:
            await client.wait_for("session.created")
        status, body, retry_after = await refused(engine_url, ENGINE_TEST_KEY)
        assert status == 503 and body["error"]["code"] == "engine_busy" and retry_after  # type: ignore[index]
        await clients.pop().close()
        for _ in range(50):  # the engine notices the closed session within a moment
            try:
                clients.append(await EngineClient.open(engine_url, ENGINE_TEST_KEY))
                break
            except InvalidStatus:
                await asyncio.sleep(0.1)
        await clients[-1].wait_for("session.created")
    finally:
        for client in clients:
            await client.close()


async def test_the_gateway_hands_its_engine_a_key_in_the_environment_only() -> None:
    """A two-worker gateway starts the engine itself: the key is in the engine's environment, not
    its command line, and both workers use it (a call gets its session)."""
    port, engine_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("ENGINE_API_KEY", "OPENAI_API_KEY")}
    gateway = subprocess.Popen([sys.executable, "-m", "gateway", "--upstream", "local", "--engine-port", str(engine_port),
                                "--port", str(port), "--host", "127.0.0.1", "--workers", "2", "--web-root", ""],
                               cwd=ROOT, env={**env, "ENGINE_WARM_UP": "0", "HF_HUB_OFFLINE": "1"})
    try:
        await wait_healthy(f"http://127.0.0.1:{port}", timeout=300)
        engine_pid = next(int(pid) for pid in os.listdir("/proc") if pid.isdigit() and f"--port\0{engine_port}".encode()
                          in Path(f"/proc/{pid}/cmdline").read_bytes() and b"gateway.engine" in
                          Path(f"/proc/{pid}/cmdline").read_bytes())
        environ = dict(entry.split(b"=", 1) for entry in Path(f"/proc/{engine_pid}/environ").read_bytes().split(b"\0")
                       if b"=" in entry)
        key = environ[b"ENGINE_API_KEY"].decode()
        assert len(key) >= 32
        for pid in (engine_pid, gateway.pid):
            assert key.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
        url = f"ws://127.0.0.1:{engine_port}/v1/realtime"
        assert (await refused(url, None))[0] == 401
        client = await EngineClient.open(url, key)
        await client.wait_for("session.created")
        await client.close()
        for _ in range(4):  # fresh connections, spread over both workers by the kernel
            peer = ClientPeer(f"http://127.0.0.1:{port}")
            try:
                await peer.connect()
                await peer.channel_open()
                await peer.wait_for("session.created", timeout=30)
                assert not peer.of_type("error"), peer.of_type("error")
            finally:
                await peer.close()
    finally:
        gateway.terminate()
        gateway.wait(30)
