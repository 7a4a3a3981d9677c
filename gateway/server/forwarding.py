"""Requests about a call reach the worker holding it, over that worker's private Unix socket.

Browsers pool connections, so a call's requests (create, resume, trickle, hang-up) land on any
worker. The one that receives a request has already identified the client and checked its
origin (the middlewares outside this one); it forwards the request with that verdict in
``X-Gateway-*`` headers (see :func:`~.client_identity.forwarded_headers`) and relays the answer.
A token naming a worker that does not exist is answered here, as the forgery it is.

Across instances (``INSTANCE_ID`` in every id) a front such as nginx routes by the id; one that
cannot (plain round robin) lands a request on any instance, which passes it on over HTTP to the
instance named in the id (its URL from :class:`~.cluster.Cluster`), with the client's address in
``X-Forwarded-For``: the owner must list the instances' addresses in ``TRUSTED_PROXIES``. Signed
client secrets (``GATEWAY_SECRET``) are valid everywhere and are not passed on.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from aiohttp import web

from .client_identity import FORWARDED_HEADER, client_of, forwarded_headers, is_internal
from .worker_pool import instance_of, owner, socket_path

PeerUrl = Callable[[str], Awaitable[str | None]]

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "upgrade", "host", "content-length"}
FORWARD_TIMEOUT_S = 60.0  # an offer's answer waits for ICE gathering and the TURN check


def target_id(request: web.Request) -> str | None:
    """The call id or token that says where a request belongs."""
    if request.path.startswith("/v1/realtime/calls/"):
        return request.match_info.get("call_id", request.path.split("/")[4])
    if request.path == "/v1/realtime/calls" and request.method == "POST":
        _, _, token = request.headers.get("Authorization", "").partition(" ")
        return token.strip()
    return None


def target_worker(request: web.Request) -> int | None:
    ident = target_id(request)
    return None if ident is None else owner(ident)


def forwarding_middleware(worker: int | None, runtime_dir: Path | None, *, instance: str | None = None,
                          peer_url: PeerUrl | None = None,
                          signed: bool = False) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """``worker``/``runtime_dir``: this worker and its siblings' sockets (None: one process);
    ``instance``/``peer_url``: this instance and how to reach the others (None: alone);
    ``signed``: client secrets are valid on any instance, so they stay here."""
    @web.middleware
    async def forward(request: web.Request, handler: Handler) -> web.StreamResponse:
        if is_internal(request):
            return await handler(request)
        ident = target_id(request)
        if ident is None:
            return await handler(request)
        named = instance_of(ident)
        if named is not None and named != instance:
            if peer_url is None or (signed and ident.startswith("ek_")):
                return await handler(request)
            url = await peer_url(named)
            return await handler(request) if url is None else await _forward_http(request, url)
        target = owner(ident)
        if worker is None or runtime_dir is None or target is None or target == worker:
            return await handler(request)
        path = socket_path(runtime_dir, target)
        if not path.exists():  # no such worker: the handler says the id or token is not valid
            return await handler(request)
        return await _forward(request, path)

    return forward


async def _forward(request: web.Request, path: Path) -> web.StreamResponse:
    """To another worker of this host, over its private Unix socket."""
    return await _relay(request, f"http://worker{request.rel_url}", forwarded_headers(request, drop=_HOP_BY_HOP),
                        aiohttp.UnixConnector(path=str(path)), "worker_unavailable", "gateway process")


async def _forward_http(request: web.Request, base_url: str) -> web.StreamResponse:
    """To another instance, saying who the client is as a trusted proxy would."""
    client = client_of(request)
    headers = forwarded_headers(request, drop={*_HOP_BY_HOP, "forwarded", "x-forwarded-for", "x-forwarded-host"})
    headers = {k: v for k, v in headers.items() if not k.lower().startswith("x-gateway-")}
    headers.update({"X-Forwarded-For": client.address, "X-Forwarded-Host": client.host})
    return await _relay(request, f"{base_url.rstrip('/')}{request.rel_url}", headers, None,
                        "instance_unavailable", "gateway instance")


async def _relay(request: web.Request, url: str, headers: dict[str, str], connector: aiohttp.BaseConnector | None,
                 unavailable: str, owner: str) -> web.StreamResponse:
    """Send ``request`` on to ``url`` and hand back its answer; 503 ``unavailable`` if the owner is silent."""
    body = await request.read()
    try:
        async with aiohttp.ClientSession(connector=connector,
                                         timeout=aiohttp.ClientTimeout(total=FORWARD_TIMEOUT_S)) as http:
            async with http.request(request.method, url, headers=headers, data=body, allow_redirects=False) as response:
                data = await response.read()
                out_headers = {k: v for k, v in response.headers.items() if k.lower() not in _HOP_BY_HOP}
                return web.Response(status=response.status, body=data, headers=out_headers)
    except (TimeoutError, aiohttp.ClientError, OSError):
        return web.json_response({"error": {"type": "server_error", "code": unavailable, "param": None,
                                            "message": f"The {owner} holding this call is not answering."}},
                                 status=503, headers={"Retry-After": "2"})


async def get_from_workers(runtime_dir: Path, worker: int, path: str, timeout_s: float = 2.0) -> list[str]:
    """``GET path`` on every other worker (internal requests); the texts of those that answered."""
    texts: list[str] = []
    for socket in sorted(runtime_dir.glob("worker-*.sock")):
        if socket == socket_path(runtime_dir, worker):
            continue
        try:
            async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(socket))) as http:
                async with http.get(f"http://worker{path}", headers={FORWARDED_HEADER: "1"},
                                    timeout=aiohttp.ClientTimeout(total=timeout_s)) as response:
                    texts.append(await response.text())
        except (TimeoutError, aiohttp.ClientError, OSError):
            logger.warning("no answer for %s from %s", path, socket.name)
    return texts
