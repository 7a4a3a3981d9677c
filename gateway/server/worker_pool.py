"""Every core: one gateway process per core, and requests routed to the process owning a call.

aiortc is single-threaded Python, so ``--workers N`` runs N processes that all accept on the
same port (SO_REUSEPORT: the kernel spreads connections). A call lives in one worker, so its
ids name that worker — ``ek_w1_…`` (the client secret that will create it), ``rtc_w1_…`` (the
call), ``rsm_w1_…`` (its resume token) — and a worker receiving a request for another's call
forwards it over that worker's private Unix socket. ``/metrics`` merges every worker's series.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import aiohttp
from aiohttp import web
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from .parent_death import child_env

logger = logging.getLogger(__name__)

INTERNAL_HEADER = "X-Gateway-Forwarded"  # set on worker-to-worker requests (Unix socket only)
CLIENT_IP_HEADER = "X-Gateway-Client-IP"
_WORKER_TAG = re.compile(r"^(?:ek|rtc|rsm)_w(\d+)_")
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "upgrade", "host", "content-length"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def tag(prefix: str, worker: int | None) -> str:
    """``ek_`` → ``ek_w2_`` in worker 2; unchanged in a single-process gateway."""
    return prefix if worker is None else f"{prefix}w{worker}_"


def owner(identifier: str) -> int | None:
    match = _WORKER_TAG.match(identifier)
    return int(match.group(1)) if match else None


def socket_path(runtime_dir: Path, worker: int) -> Path:
    return runtime_dir / f"worker-{worker}.sock"


def is_forwarded(request: web.Request) -> bool:
    """Only a request that came over a worker's private Unix socket may claim to be forwarded
    (a TCP socket's name is an address tuple, a Unix socket's a path string)."""
    transport = request.transport
    return INTERNAL_HEADER in request.headers and transport is not None and \
        isinstance(transport.get_extra_info("sockname"), str)


def client_ip(request: web.Request) -> str:
    if is_forwarded(request):
        return request.headers.get(CLIENT_IP_HEADER, "unknown")
    return request.remote or "unknown"


def _target_worker(request: web.Request) -> int | None:
    if request.path.startswith("/v1/realtime/calls/"):
        return owner(request.match_info.get("call_id", request.path.split("/")[4]))
    if request.path == "/v1/realtime/calls" and request.method == "POST":
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return owner(token.strip())
    return None


def forwarding_middleware(worker: int, runtime_dir: Path) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    @web.middleware
    async def forward(request: web.Request, handler: Handler) -> web.StreamResponse:
        if is_forwarded(request):
            return await handler(request)
        if request.path == "/metrics":
            return await _merged_metrics(request, handler, worker, runtime_dir)
        target = _target_worker(request)
        if target is None or target == worker:
            return await handler(request)
        return await _forward(request, socket_path(runtime_dir, target))

    return forward


async def _forward(request: web.Request, path: Path) -> web.StreamResponse:
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
    headers[INTERNAL_HEADER] = "1"
    headers[CLIENT_IP_HEADER] = request.remote or "unknown"
    body = await request.read()
    try:
        async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(path))) as http:
            async with http.request(request.method, f"http://worker{request.rel_url}", headers=headers,
                                    data=body, allow_redirects=False) as response:
                data = await response.read()
                out_headers = {k: v for k, v in response.headers.items() if k.lower() not in _HOP_BY_HOP}
                return web.Response(status=response.status, body=data, headers=out_headers)
    except (aiohttp.ClientError, OSError):
        return web.json_response({"error": {"type": "server_error", "code": "worker_unavailable", "param": None,
                                            "message": "The gateway process holding this call is not answering."}},
                                 status=503, headers={"Retry-After": "2"})


async def _merged_metrics(request: web.Request, handler: Handler, worker: int,
                          runtime_dir: Path) -> web.StreamResponse:
    own = await handler(request)
    assert isinstance(own, web.Response) and own.body is not None
    texts = [own.body.decode() if isinstance(own.body, bytes) else str(own.body)]
    for path in sorted(runtime_dir.glob("worker-*.sock")):
        if path == socket_path(runtime_dir, worker):
            continue
        try:
            async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(path))) as http:
                async with http.get("http://worker/metrics", headers={INTERNAL_HEADER: "1"},
                                    timeout=aiohttp.ClientTimeout(total=2)) as response:
                    texts.append(await response.text())
        except (TimeoutError, aiohttp.ClientError, OSError):
            logger.warning("no metrics from %s", path.name)
    families: dict[str, Metric] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            merged = families.setdefault(family.name, Metric(family.name, family.documentation, family.type))
            merged.samples.extend(family.samples)
    from prometheus_client.exposition import generate_latest

    class _Merged:
        def collect(self) -> list[Metric]:
            return list(families.values())

    return web.Response(body=generate_latest(_Merged()), headers={"Content-Type": own.headers["Content-Type"]})


async def supervise(argv: Sequence[str], workers: int, runtime_dir: Path, stop: asyncio.Event) -> None:
    """The parent: start one worker process per core, pass SIGTERM on, and wait for them."""
    runtime_dir.mkdir(parents=True, exist_ok=True)
    processes = [await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", *argv, "--worker-index", str(index), "--runtime-dir", str(runtime_dir),
        env=child_env({**os.environ, "WORKERS": "1"})) for index in range(workers)]
    logger.info("%d workers started (pids %s)", workers, ", ".join(str(p.pid) for p in processes))
    waits = [asyncio.ensure_future(p.wait()) for p in processes]
    stopping = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait({stopping, *waits}, return_when=asyncio.FIRST_COMPLETED)
    if stopping not in done:
        logger.error("a worker exited (status %s): stopping the gateway", [p.returncode for p in processes])
    for process in processes:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
    await asyncio.gather(*waits)
    stopping.cancel()
