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

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from .client_identity import FORWARDED_HEADER, client_of, forwarded_headers, is_internal
from .worker_pool import instance_of, owner, socket_path

PeerUrl = Callable[[str], Awaitable[str | None]]

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "upgrade", "host", "content-length"}
FORWARD_TIMEOUT_S = 60.0  # an offer's answer waits for ICE gathering and the TURN check
CONNECT_TIMEOUT_S = 2.0  # an owner that does not accept a connection by then is gone
MAX_CONNECTIONS = 64  # pooled connections to every owner together (HTTP requests; WebSockets apart)
MAX_CONNECTIONS_PER_OWNER = 16
KEEPALIVE_S = 30.0


class Forwarder:
    """This process's HTTP clients towards the owners of calls, opened on startup and closed on
    cleanup (:meth:`context`): one pooled session for the other instances and one per sibling
    worker's Unix socket (an aiohttp connector has a single socket path), each bounded by
    :data:`MAX_CONNECTIONS` with keep-alive, so a forwarded request (or a ``/metrics`` fan-out,
    :func:`get_from_workers`) costs no new connection.
    WebSockets (sidebands) get sessions of their own without a pool limit: each holds its
    connection for a whole call, and there is at most one per call."""

    def __init__(self) -> None:
        self._sessions: dict[tuple[Path | None, bool], aiohttp.ClientSession] = {}
        self._open = False

    async def context(self, app: web.Application) -> AsyncIterator[None]:
        """For ``app.cleanup_ctx``."""
        self._open = True
        try:
            yield
        finally:
            self._open = False
            sessions, self._sessions = list(self._sessions.values()), {}
            await asyncio.gather(*(session.close() for session in sessions), return_exceptions=True)

    def session(self, path: Path | None = None, *, websocket: bool = False) -> aiohttp.ClientSession:
        """The session towards the sibling worker at ``path``, or (None) towards other instances."""
        if not self._open:
            raise RuntimeError("the forwarder is used outside the application's lifetime")
        key = (path, websocket)
        session = self._sessions.get(key)
        if session is None or session.closed:
            limits: dict[str, Any] = {"limit": 0} if websocket else {
                "limit": MAX_CONNECTIONS, "limit_per_host": MAX_CONNECTIONS_PER_OWNER, "keepalive_timeout": KEEPALIVE_S}
            connector = aiohttp.TCPConnector(**limits) if path is None else aiohttp.UnixConnector(str(path), **limits)
            timeout = aiohttp.ClientTimeout(total=None if websocket else FORWARD_TIMEOUT_S,
                                            sock_connect=CONNECT_TIMEOUT_S)
            # the answer is relayed byte for byte, Content-Encoding included
            session = self._sessions[key] = aiohttp.ClientSession(connector=connector, timeout=timeout,
                                                                  auto_decompress=False)
        return session


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


def forwarding_middleware(forwarder: Forwarder, worker: int | None, runtime_dir: Path | None, *,
                          instance: str | None = None, peer_url: PeerUrl | None = None,
                          signed: bool = False) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """``forwarder``: this process's clients towards owners;
    ``worker``/``runtime_dir``: this worker and its siblings' sockets (None: one process);
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
            return await handler(request) if url is None else await _forward_http(forwarder, request, url)
        target = owner(ident)
        if worker is None or runtime_dir is None or target is None or target == worker:
            return await handler(request)
        path = socket_path(runtime_dir, target)
        if not path.exists():  # no such worker: the handler says the id or token is not valid
            return await handler(request)
        return await _forward(forwarder, request, path)

    return forward


async def _forward(forwarder: Forwarder, request: web.Request, path: Path) -> web.StreamResponse:
    """To another worker of this host, over its private Unix socket."""
    return await _relay(forwarder.session(path), request, f"http://worker{request.rel_url}",
                        forwarded_headers(request, drop=_HOP_BY_HOP), "worker_unavailable", "gateway process")


def instance_headers(request: web.Request, drop: Iterable[str]) -> dict[str, str]:
    """The client's headers minus ``drop`` for another instance, saying who the client is as a
    trusted proxy would (``X-Forwarded-For``); no ``X-Gateway-*``: those are for sibling workers."""
    client = client_of(request)
    headers = forwarded_headers(request, drop={*drop, "forwarded", "x-forwarded-for", "x-forwarded-host"})
    headers = {k: v for k, v in headers.items() if not k.lower().startswith("x-gateway-")}
    headers.update({"X-Forwarded-For": client.address, "X-Forwarded-Host": client.host})
    return headers


async def _forward_http(forwarder: Forwarder, request: web.Request, base_url: str) -> web.StreamResponse:
    """To another instance."""
    return await _relay(forwarder.session(), request, f"{base_url.rstrip('/')}{request.rel_url}",
                        instance_headers(request, _HOP_BY_HOP), "instance_unavailable", "gateway instance")


async def _relay(http: aiohttp.ClientSession, request: web.Request, url: str, headers: dict[str, str],
                 unavailable: str, owner: str) -> web.StreamResponse:
    """Send ``request`` on to ``url`` and hand back its answer; 503 ``unavailable`` if the owner is silent."""
    body = await request.read()
    try:
        async with http.request(request.method, url, headers=headers, data=body, allow_redirects=False) as response:
            data = await response.read()
            out_headers = {k: v for k, v in response.headers.items() if k.lower() not in _HOP_BY_HOP}
            return web.Response(status=response.status, body=data, headers=out_headers)
    except (TimeoutError, aiohttp.ClientError, OSError):
        return web.json_response({"error": {"type": "server_error", "code": unavailable, "param": None,
                                            "message": f"The {owner} holding this call is not answering."}},
                                 status=503, headers={"Retry-After": "2"})


async def get_from_workers(forwarder: Forwarder, runtime_dir: Path, worker: int, path: str,
                           timeout_s: float = 2.0) -> list[str]:
    """``GET path`` on every other worker (internal requests), over ``forwarder``'s pooled session
    towards each; the texts of those that answered."""
    texts: list[str] = []
    for socket in sorted(runtime_dir.glob("worker-*.sock")):
        if socket == socket_path(runtime_dir, worker):
            continue
        try:
            async with forwarder.session(socket).get(f"http://worker{path}", headers={FORWARDED_HEADER: "1"},
                                                     timeout=aiohttp.ClientTimeout(total=timeout_s)) as response:
                texts.append(await response.text())
        except (TimeoutError, aiohttp.ClientError, OSError):
            logger.warning("no answer for %s from %s", path, socket.name)
    return texts
