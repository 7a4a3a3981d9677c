"""Admission shared by every instance of a cluster through one Redis (``REDIS_URL``).

The same four operations as :class:`~.admission.SharedAdmission`, each one Lua script (atomic
in Redis, on Redis's clock, so every instance refills its buckets alike); call slots expire with
their holder's heartbeat, so a killed instance's calls stop counting. The ``redis`` package is
imported only when a function here is called with Redis configured: a gateway without
``REDIS_URL`` never loads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from ..core.errors import AtCapacity
from ..core.limits import Rate
from .admission import LocalAdmission, client_full, gateway_full

logger = logging.getLogger(__name__)


def redis_failures() -> tuple[type[BaseException], ...]:
    """What a Redis call raises when Redis is away. The client library is imported only where
    Redis is used, so a gateway without ``REDIS_URL`` never loads it."""
    from redis.exceptions import RedisError

    return (RedisError, OSError)


_PREFIX = "gw:"
HEARTBEAT_S = 2.0  # each holder (one worker of one instance) says it is alive this often
HOLDER_TTL_S = 6.0  # ... and its call slots expire this long after it stopped


# KEYS[1] bucket; ARGV rate/s, burst. Redis's own clock, so every instance refills alike.
_TAKE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = tonumber(b[1]) or burst
local updated = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - updated) * rate)
local granted = tokens >= 1
if granted then tokens = tokens - 1 end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'updated', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
if granted then return -1 end
return tostring((1 - tokens) / rate)
"""

# KEYS: holders set; ARGV prefix, holder, slot, client, max_calls, per_client. Holders whose
# heartbeat expired lose their slots here, so a dead instance's calls stop counting.
_RESERVE_LUA = """
local p, me, slot, client = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local max_calls, per_client = tonumber(ARGV[5]), tonumber(ARGV[6])
local total, mine = 0, 0
for _, h in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if h ~= me and redis.call('EXISTS', p .. 'alive:' .. h) == 0 then
    redis.call('DEL', p .. 'slots:' .. h, p .. 'clients:' .. h)
    redis.call('SREM', KEYS[1], h)
  else
    total = total + redis.call('HLEN', p .. 'slots:' .. h)
    mine = mine + (tonumber(redis.call('HGET', p .. 'clients:' .. h, client)) or 0)
  end
end
if total >= max_calls then return 1 end
if per_client > 0 and mine >= per_client then return 2 end
redis.call('SADD', KEYS[1], me)
if redis.call('HSETNX', p .. 'slots:' .. me, slot, client) == 1 then
  redis.call('HINCRBY', p .. 'clients:' .. me, client, 1)
end
return 0
"""

_RELEASE_LUA = """
local p, me, slot = ARGV[1], ARGV[2], ARGV[3]
local client = redis.call('HGET', p .. 'slots:' .. me, slot)
if client then
  redis.call('HDEL', p .. 'slots:' .. me, slot)
  if redis.call('HINCRBY', p .. 'clients:' .. me, client, -1) <= 0 then
    redis.call('HDEL', p .. 'clients:' .. me, client)
  end
end
return 0
"""

# The heartbeat, its value the holder's calls (ARGV[5]); with ARGV[4] = '1' it also replaces this
# holder's slots with ARGV[6..] (slot, client pairs): after Redis lost them (restarted) or missed
# a release (unreachable).
_HEARTBEAT_LUA = """
local p, me, ttl_ms, resync = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local existed = redis.call('EXISTS', p .. 'alive:' .. me)
if resync == '1' then
  redis.call('DEL', p .. 'slots:' .. me, p .. 'clients:' .. me)
  for i = 6, #ARGV, 2 do
    redis.call('HSET', p .. 'slots:' .. me, ARGV[i], ARGV[i + 1])
    redis.call('HINCRBY', p .. 'clients:' .. me, ARGV[i + 1], 1)
  end
  existed = 1
end
redis.call('SET', p .. 'alive:' .. me, ARGV[5], 'PX', ttl_ms)
redis.call('SADD', KEYS[1], me)
return existed
"""


def store_unavailable() -> AtCapacity:
    return AtCapacity("The gateway's shared store is unreachable; try again shortly.",
                      code="shared_store_unavailable", headers={"Retry-After": "2"})


class RedisAdmission:
    """Every instance of a cluster sharing one Redis (``REDIS_URL``): one Lua script per operation.

    The holder is this process (``<instance>-w<worker>``): its slots live in ``gw:slots:<holder>``
    while its heartbeat key ``gw:alive:<holder>`` (value: its calls) lives, so a killed instance's
    slots stop counting :data:`HOLDER_TTL_S` after its last heartbeat. A local copy of this
    holder's slots is written back whenever Redis lost them.

    Redis unreachable (logged once, ``gateway_shared_store_up`` 0): rate limits fall back to this
    process's own buckets (so a front keeps working at per-instance limits), new call slots are
    refused (503 ``shared_store_unavailable``: the cluster-wide ``MAX_CALLS`` cannot be checked),
    calls in progress go on, and their releases are replayed once Redis answers again.
    """

    def __init__(self, client: Any, holder: str, max_calls: int, max_calls_per_client: int) -> None:
        self._failures = redis_failures()
        self.redis = client
        self.holder = holder
        self._max_calls = max_calls
        self._max_per_client = max_calls_per_client
        self._local = LocalAdmission(max_calls, max_calls_per_client)  # rate limits while Redis is away
        self._slots: dict[str, str] = {}  # this holder's slots → client (the copy written back)
        self._dirty = True  # Redis may not hold our slots as they are: write them back
        self._take = client.register_script(_TAKE_LUA)
        self._reserve = client.register_script(_RESERVE_LUA)
        self._release = client.register_script(_RELEASE_LUA)
        self._heartbeat = client.register_script(_HEARTBEAT_LUA)
        self.up = True
        self.on_change: Callable[[bool], None] = lambda up: None

    def _failed(self, exc: BaseException) -> None:
        self._dirty = True
        if self.up:
            self.up = False
            logger.error("Redis unreachable (%s): new calls refused, rate limits per instance, "
                         "calls in progress go on", exc or type(exc).__name__)
            self.on_change(False)

    def _answered(self) -> None:
        if not self.up:
            self.up = True
            logger.warning("Redis reachable again: cluster-wide limits restored")
            self.on_change(True)

    async def take(self, key: str, rate: Rate) -> float | None:
        try:
            result = await self._take(keys=[f"{_PREFIX}bucket:{key}"], args=[rate.per_second, rate.burst])
        except self._failures as exc:
            self._failed(exc)
            return await self._local.take(key, rate)
        self._answered()
        return None if result == -1 else float(result)

    async def reserve(self, slot: str, client: str) -> None:
        try:
            verdict = int(await self._reserve(keys=[f"{_PREFIX}holders"], args=[
                _PREFIX, self.holder, slot, client, self._max_calls, self._max_per_client]))
        except self._failures as exc:
            self._failed(exc)
            raise store_unavailable() from None
        self._answered()
        if verdict == 1:
            raise gateway_full()
        if verdict == 2:
            raise client_full(self._max_per_client)
        self._slots[slot] = client

    async def release(self, slot: str) -> None:
        if self._slots.pop(slot, None) is None:
            return
        try:
            await self._release(keys=[f"{_PREFIX}holders"], args=[_PREFIX, self.holder, slot])
        except self._failures as exc:
            self._failed(exc)  # the next heartbeat that gets through writes our slots back

    async def beat(self) -> None:
        """One heartbeat (see :meth:`keep_beating`); raises if Redis did not answer."""
        resync = self._dirty
        pairs = [item for slot_client in self._slots.items() for item in slot_client] if resync else []
        try:
            existed = await self._heartbeat(keys=[f"{_PREFIX}holders"], args=[
                _PREFIX, self.holder, int(HOLDER_TTL_S * 1000), "1" if resync else "0", len(self._slots), *pairs])
        except self._failures as exc:
            self._failed(exc)
            raise
        self._answered()
        self._dirty = False
        if not existed:  # Redis lost our slots (restarted, or we were away too long)
            self._dirty = True
            await self.beat()

    async def keep_beating(self) -> None:
        while True:
            with contextlib.suppress(*self._failures):
                await self.beat()
            await asyncio.sleep(HEARTBEAT_S)

    async def calls(self) -> int:
        """Calls in progress on every live holder of the cluster."""
        holders = await self.redis.smembers(f"{_PREFIX}holders")
        loads = await self.redis.mget([f"{_PREFIX}alive:{h.decode()}" for h in holders]) if holders else []
        return sum(int(load) for load in loads if load is not None)

    async def close(self) -> None:
        with contextlib.suppress(*self._failures):
            if self._slots:
                for slot in list(self._slots):
                    await self.release(slot)
            await self.redis.delete(f"{_PREFIX}alive:{self.holder}")
        await self.redis.aclose()
