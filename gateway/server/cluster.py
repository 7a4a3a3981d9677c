"""This instance among others: where the others are, and single use of client secrets across them.

With ``GATEWAY_SECRET`` every instance accepts every instance's client secrets (they are signed:
:mod:`gateway.core.tokens`); with ``REDIS_URL`` too, a single-use secret creates one call in the
whole cluster (``SET gw:secret:<id> NX`` until it expires) and each instance registers the URL the
others reach it at (``gw:instance:<name>``, expiring with its heartbeat), which
:mod:`.forwarding` uses when a front sent a request for one instance's call to another.
``INSTANCES`` names them statically instead. Without Redis each instance stands alone for single
use and limits, and says so once at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from ..config import Config
from ..core.errors import Unauthorized
from .redis_admission import HEARTBEAT_S, HOLDER_TTL_S, RedisAdmission, redis_failures, store_unavailable

logger = logging.getLogger(__name__)

_PREFIX = "gw:"


def redis_client(url: str) -> Any:
    """A redis.asyncio client with short timeouts: Redis away must not hold a request for long."""
    import redis.asyncio
    return redis.asyncio.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)


class Cluster:
    def __init__(self, config: Config, admission: RedisAdmission | None) -> None:
        self._failures = redis_failures() if config.redis_url else (OSError,)
        self._config = config
        self._admission = admission
        self._static = dict(entry.partition("=")[::2] for entry in config.instances)

    @property
    def shared(self) -> bool:
        return self._admission is not None

    def announce(self) -> None:
        """The one start-up line saying how this instance relates to the others."""
        config = self._config
        if self._admission is not None:
            logger.info("instance %s: limits and single-use secrets shared through Redis%s", config.instance_id,
                        "" if config.gateway_secret else " (no GATEWAY_SECRET: secrets only valid here)")
        elif config.gateway_secret or config.instances:
            logger.warning("instance %s: no REDIS_URL, so this instance stands alone: its limits and "
                           "single-use secrets are not shared with other instances", config.instance_id)

    async def claim_secret(self, secret_id: str, expires_at: int) -> None:
        """Single use across the cluster: the first instance to claim ``secret_id`` has it."""
        if self._admission is None:
            return
        try:
            fresh = await self._admission.redis.set(f"{_PREFIX}secret:{secret_id}", "1", nx=True,
                                                    exat=max(expires_at, 1))
        except self._failures:
            raise store_unavailable() from None
        if not fresh:
            raise Unauthorized("The client secret is not valid (or was already used to create a call).",
                               code="invalid_client_secret")

    async def release_secret(self, secret_id: str) -> None:
        """The call could not be set up: the secret may be used again."""
        if self._admission is not None:
            with contextlib.suppress(*self._failures):
                await self._admission.redis.delete(f"{_PREFIX}secret:{secret_id}")

    async def url_of(self, instance: str) -> str | None:
        """How to reach ``instance``: ``INSTANCES``, else its registration in Redis."""
        if instance in self._static:
            return self._static[instance]
        if self._admission is None:
            return None
        try:
            url = await self._admission.redis.get(f"{_PREFIX}instance:{instance}")
        except self._failures:
            return None
        return url.decode() if url else None

    async def run(self) -> None:
        """Heartbeats: this holder's call slots, and this instance's URL for the others."""
        if self._admission is None:
            return
        beating = asyncio.create_task(self._admission.keep_beating())
        try:
            url = self._config.advertise_url
            while url:
                with contextlib.suppress(*self._failures):
                    await self._admission.redis.set(f"{_PREFIX}instance:{self._config.instance_id}", url,
                                                    px=int(HOLDER_TTL_S * 1000))
                await asyncio.sleep(HEARTBEAT_S)
            await beating
        finally:
            beating.cancel()
            await asyncio.gather(beating, return_exceptions=True)
