"""The gateway's HTTP interface as a sub-application of someone else's aiohttp application.

:func:`gateway_subapp` is :func:`~gateway.server.signaling.create_app` with two additions: the
gateway's middlewares and handlers see paths relative to the mount point (the origin check,
the 404 messages and the call URLs are written for ``/v1/realtime/…``), with the gateway's own
body limit (aiohttp otherwise applies the outer application's); and with the local engine as
upstream, the engine process starts and stops with the application.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware
from yarl import URL

from ..config import Config
from ..server.engine_process import EngineProcess
from ..server.signaling import create_app

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def gateway_subapp(config: Config, prefix: str) -> web.Application:
    if config.worker_index is not None:
        raise ValueError("a mounted gateway serves its calls in the application's own process: "
                         "worker settings (worker_index) do not apply")
    app = create_app(config)
    app.middlewares.insert(0, _below(prefix.rstrip("/"), config.max_body_bytes))
    if config.resolved_upstream == "local":
        app.cleanup_ctx.append(_engine(config))
    return app


def _below(prefix: str, max_body_bytes: int) -> Middleware:
    @web.middleware
    async def relative(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.rel_url.path
        if path.startswith(prefix):
            path = path[len(prefix):] or "/"
        rel_url = URL.build(path=path, query_string=request.rel_url.query_string, encoded=True)
        return await handler(request.clone(rel_url=rel_url, client_max_size=max_body_bytes))

    return relative


def _engine(config: Config) -> Callable[[web.Application], AsyncIterator[None]]:
    async def engine(app: web.Application) -> AsyncIterator[None]:
        async with EngineProcess(config):
            yield

    return engine
