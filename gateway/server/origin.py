"""Which pages may use the API: the gateway's own origin, and ``ALLOWED_ORIGINS`` cross-origin (CORS).

Same-origin means the page's ``Origin`` names the host the browser addressed — ``Host``, or what
a trusted proxy says the browser sent (see :mod:`.client_identity`). A request another worker
forwarded was checked there, before forwarding, and is not checked again: its ``Host`` is the
worker socket's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import urlsplit

from aiohttp import web

from ..core.errors import Forbidden
from .client_identity import client_of
from .http_errors import error_response

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def cors_middleware(allowed: Sequence[str]) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """Answer preflights for allowed origins and refuse API calls from other foreign origins."""
    allow_any = "*" in allowed

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        client = client_of(request)
        if origin is None or client.internal or same_origin(origin, client.host):
            return await handler(request)
        if not allow_any and origin not in allowed:
            if request.path.startswith("/v1/"):
                return error_response(Forbidden(f"Origin {origin} is not allowed to use this gateway.",
                                                code="origin_not_allowed"))
            return await handler(request)
        headers = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            headers.update({
                "Access-Control-Allow-Methods": "GET, POST, DELETE, PATCH, OPTIONS",
                "Access-Control-Allow-Headers": request.headers.get("Access-Control-Request-Headers", ""),
                "Access-Control-Max-Age": "600",
            })
            return web.Response(status=204, headers=headers)
        response = await handler(request)
        headers["Access-Control-Expose-Headers"] = "Location, X-Resume-Token"
        response.headers.update(headers)
        return response

    return cors


def same_origin(origin: str, host: str) -> bool:
    """``https://Example.com`` and ``example.com:443`` are one origin; default ports are implied."""
    try:
        parts = urlsplit(origin)
        origin_host, origin_port = (parts.hostname or "").lower(), parts.port
    except ValueError:
        return False
    default = _DEFAULT_PORTS.get(parts.scheme, "")
    return bool(origin_host) and \
        _authority(origin_host, str(origin_port or default), default) == _host_authority(host, default)


def _host_authority(host: str, default_port: str) -> str | None:
    try:
        parts = urlsplit(f"//{host.strip()}")
        name, port = (parts.hostname or "").lower(), parts.port
    except ValueError:
        return None
    return _authority(name, str(port or default_port), default_port) if name else None


def _authority(name: str, port: str, default_port: str) -> str:
    return name if port == default_port else f"{name}:{port}"
