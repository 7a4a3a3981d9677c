"""HTTP the way a page makes it, and multi-worker gateways started as processes.

Browsers pool connections, so any request of a call may land on any worker: :class:`PageClient`
sends each request on a fresh connection (``force_close``) with the page's ``Origin``, plus any
headers a test adds (``X-Forwarded-For`` from a trusted proxy, spoofed ``X-Gateway-*``…).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp
from aiortc import RTCSessionDescription

from tests.conftest import free_port, wait_healthy
from tests.fake_upstream import FakeRealtimeServer
from tests.peers import ClientPeer

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Answer:
    status: int
    headers: Mapping[str, str]
    text: str

    def json(self) -> Any:
        import json

        return json.loads(self.text)

    @property
    def code(self) -> str | None:
        """The JSON error's code, if this is an error."""
        try:
            return str(self.json()["error"]["code"])
        except (ValueError, KeyError, TypeError):
            return None


@dataclass
class PageClient:
    base_url: str
    origin: str | None = None  # None: the gateway's own origin (the reference page); "": no Origin
    headers: dict[str, str] = field(default_factory=dict)

    async def request(self, method: str, path: str, *, data: Any = None, json_body: Any = None,
                      headers: Mapping[str, str] | None = None) -> Answer:
        origin = self.base_url if self.origin is None else self.origin
        sent = {**({"Origin": origin} if origin else {}), **self.headers, **(headers or {})}
        connector = aiohttp.TCPConnector(force_close=True)  # a new connection: any worker may take it
        async with aiohttp.ClientSession(connector=connector) as http:
            async with http.request(method, f"{self.base_url}{path}", data=data, json=json_body,
                                    headers=sent) as response:
                return Answer(response.status, dict(response.headers), await response.text())

    async def mint(self, body: Any = None) -> Answer:
        return await self.request("POST", "/v1/realtime/client_secrets", json_body=body or {})

    async def offer(self, sdp: str, token: str) -> Answer:
        return await self.request("POST", "/v1/realtime/calls", data=sdp, headers={
            "Content-Type": "application/sdp", "Authorization": f"Bearer {token}"})

    async def start_call(self, peer: ClientPeer, *, hold_back_candidate: bool = False,
                         minted: Answer | None = None) -> tuple[Answer, Answer, str | None]:
        """Mint (unless given ``minted``), then offer ``peer``'s SDP: (mint answer, offer answer,
        the held-back candidate line)."""
        minted = minted if minted is not None else await self.mint()
        if minted.status != 200:
            return minted, minted, None
        peer.secret = minted.json()
        await peer.pc.setLocalDescription(await peer.pc.createOffer())
        lines = peer.pc.localDescription.sdp.split("\r\n")
        held = next((line for line in lines if line.startswith("a=candidate:")), None) if hold_back_candidate else None
        offer = "\r\n".join(line for line in lines if line != held)
        answer = await self.offer(offer, peer.secret["value"])
        if answer.status == 201:
            peer.location = answer.headers["Location"]
            peer.resume_token = answer.headers.get("X-Resume-Token")
            await peer.pc.setRemoteDescription(RTCSessionDescription(sdp=answer.text, type="answer"))
        return minted, answer, held

    async def trickle(self, location: str, candidate: str) -> Answer:
        fragment = f"a=ice-ufrag:x\r\na=ice-pwd:y\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n{candidate}\r\n"
        return await self.request("PATCH", location, data=fragment,
                                  headers={"Content-Type": "application/trickle-ice-sdpfrag"})

    async def hang_up(self, location: str) -> Answer:
        return await self.request("DELETE", location)


@dataclass
class GatewayProcess:
    url: str
    process: subprocess.Popen[bytes]

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        return self.process.wait(40)


async def start_gateway_process(upstream: FakeRealtimeServer, runtime_dir: Path, *flags: str,
                                workers: int = 2, stderr: IO[bytes] | None = None) -> GatewayProcess:
    """``python -m gateway --workers N`` against ``upstream``, once every worker listens
    (``stderr``: where its log goes; default: the test's)."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "gateway", "--workers", str(workers), "--upstream", "url",
                                "--upstream-url", upstream.url, "--openai-api-key", "sk-test-upstream-key",
                                "--host", "127.0.0.1", "--port", str(port), "--runtime-dir", str(runtime_dir),
                                "--shutdown-drain-timeout", "1", *flags], cwd=ROOT, stderr=stderr)
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(url)
    except BaseException:
        process.kill()
        process.wait(10)
        raise
    await _every_worker_listening(runtime_dir, workers)
    return GatewayProcess(url, process)


async def _every_worker_listening(runtime_dir: Path, workers: int, timeout: float = 30.0) -> None:
    """Until each worker has bound its private socket (its last step before serving): /healthz
    answering says only that one of them listens, and under load the others start seconds later."""
    deadline = time.monotonic() + timeout
    while workers > 1 and len(list(runtime_dir.glob("*/worker-*.sock"))) < workers:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{workers} workers did not all listen within {timeout} s")
        await asyncio.sleep(0.05)


def worker_of(identifier: str) -> str:
    """``ek_w1_…``, ``/v1/realtime/calls/rtc_w1_…`` → ``w1``."""
    return identifier.rsplit("/", 1)[-1].split("_")[1]
