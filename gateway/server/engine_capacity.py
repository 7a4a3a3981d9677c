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

import aiohttp

from ..config import Config
from ..core.errors import AtCapacity

logger = logging.getLogger(__name__)
PROBE_TIMEOUT_S = 1.0  # the engine answers from its event loop in about a millisecond


async def refuse_if_engine_full(config: Config) -> None:
    """Raise :class:`AtCapacity` (``engine_busy``) when the local upstream has no free session;
    an engine that cannot say (still loading, unreachable) does not block the call here."""
    if config.resolved_upstream != "local":
        return
    url = f"http://{config.engine_host}:{config.engine_port}/healthz"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S)) as http, \
                http.get(url) as response:
            health = await response.json(content_type=None)
        sessions, limit = int(health["sessions"]), int(health["max_sessions"])
    except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError) as exc:
        logger.debug("engine capacity unknown (%r): the call goes ahead", exc)
        return
    if sessions >= limit:
        raise AtCapacity(f"The offline engine already serves its {limit} sessions (ENGINE_MAX_SESSIONS); "
                         "try again shortly.", code="engine_busy", headers={"Retry-After": "2"})
