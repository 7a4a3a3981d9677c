"""An existing aiohttp application that serves the gateway under ``/voice``.

    OPENAI_API_KEY=sk-… python examples/mount_in_aiohttp.py [gateway flags…]

Then http://localhost:8080/ is the application's own page and http://localhost:8080/voice/?base=/voice
the gateway's reference page; a client's base URL is http://localhost:8080/voice. The gateway's
settings come from the environment and flags exactly as for ``python -m gateway``
(``scripts/run --help``); ``APP_PORT`` picks the application's port.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.api import Config, mount
from gateway.config import load_config

SEEN_KEY = web.AppKey("seen", list)  # the paths the application's middleware saw
GATEWAY_KEY = web.AppKey("gateway", web.Application)  # the mounted gateway (its state, for whoever needs it)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def served_by_the_shop(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The application's own middleware: it still runs for every request, the gateway's included."""
    request.app[SEEN_KEY].append(request.path)
    response = await handler(request)
    response.headers["X-Served-By"] = "shop"
    return response


async def home(request: web.Request) -> web.Response:
    return web.Response(text="<h1>The shop</h1><a href='/voice/?base=/voice'>Talk to us</a>", content_type="text/html")


def make_app(config: Config) -> web.Application:
    app = web.Application(middlewares=[served_by_the_shop])
    app[SEEN_KEY] = []
    app.router.add_get("/", home)
    app[GATEWAY_KEY] = mount(app, config, prefix="/voice")
    return app


def main() -> None:
    web.run_app(make_app(load_config(sys.argv[1:])), port=int(os.environ.get("APP_PORT", "8080")))


if __name__ == "__main__":
    main()
