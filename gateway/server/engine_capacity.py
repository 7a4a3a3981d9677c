"""Refuse a call up front while the offline engine is full, rather than accept it and fail.

The local engine serves at most ``ENGINE_MAX_SESSIONS`` Realtime sessions (8), the gateway up to
``MAX_CALLS`` calls (100), one engine session per call. A call accepted past the engine's cap
would get its SDP answer and then an upstream that refuses it (503 ``engine_busy``). So before
a call is created, the gateway asks the engine's ``/healthz`` how many sessions it serves
(counting every worker's and any other client's) and answers 503 ``engine_busy`` with
``Retry-After`` while it is full. Two calls set up in the same instant may still both pass;
the second then fails as before.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from ..config import Config
from ..core.errors import AtCapacity

logger = logging.getLogger(__name__)
PROBE_TIMEOUT_S = 1.0  # the engine answers from its event loop in about a millisecond
MAX_CONNECTIONS = 4  # probes of calls set up together share these, kept alive between calls
KEEPALIVE_S = 30.0


class EngineCapacity:
    """The probe of the local engine's ``/healthz``, over one pooled client per process that is
    opened on startup and closed on cleanup (:meth:`context`, as :class:`~.forwarding.Forwarder`'s),
    so a call costs no new connection to the engine. Nothing is opened for other upstreams."""

    def __init__(self, config: Config) -> None:
        local = config.resolved_upstream == "local"
        self._url = f"http://{config.engine_host}:{config.engine_port}/healthz" if local else None
        self._http: aiohttp.ClientSession | None = None

    async def context(self, app: web.Application) -> AsyncIterator[None]:
        """For ``app.cleanup_ctx``."""
        if self._url is not None:
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS, keepalive_timeout=KEEPALIVE_S),
                timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S))
        try:
            yield
        finally:
            http, self._http = self._http, None
            if http is not None:
                await http.close()

    async def refuse_if_full(self) -> None:
        """Raise :class:`AtCapacity` (``engine_busy``) when the local upstream has no free session;
        an engine that cannot say (still loading, unreachable) does not block the call here."""
        if self._url is None:
            return
        if self._http is None:
            raise RuntimeError("the engine probe is used outside the application's lifetime")
        try:
            async with self._http.get(self._url) as response:
                health = await response.json(content_type=None)
            sessions, limit = int(health["sessions"]), int(health["max_sessions"])
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError) as exc:
            logger.debug("engine capacity unknown (%r): the call goes ahead", exc)
            return
        if sessions >= limit:
            raise AtCapacity(f"The offline engine already serves its {limit} sessions (ENGINE_MAX_SESSIONS); "
                             "try again shortly.", code="engine_busy", headers={"Retry-After": "2"})
