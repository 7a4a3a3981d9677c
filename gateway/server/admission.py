"""Admission for the whole gateway, not per worker: rate limits and call slots shared by every process.

Each worker is its own process, so counters kept in one would give N workers N× the limits. The
workers share one :class:`SharedAdmission` instead, four operations behind an async interface:

- :meth:`~SharedAdmission.take` a token from a key's bucket (``mint:<client>``, ``call:<client>``,
  ``trickle:<client>``): ``None`` if allowed, else the seconds after which a retry would be;
- :meth:`~SharedAdmission.reserve` a call slot for a client — refused past ``MAX_CALLS`` for the
  gateway (503 ``at_capacity``) or ``MAX_CALLS_PER_CLIENT`` for one client identity (429
  ``too_many_calls``) — and :meth:`~SharedAdmission.release` it when the call ends.

:class:`LocalAdmission` serves a single-process gateway from memory. :class:`SqliteAdmission`
serves the workers of one host from one SQLite file in their private runtime directory: each
operation is a single statement (atomic across processes, no lock held over an ``await``) that
runs inline in a few tens of µs; slots carry the worker's pid so the supervisor reclaims those of
a worker that died. A cluster of hosts shares :class:`RedisAdmission` (``REDIS_URL``): one Lua
script per operation, slots expiring with their holder's heartbeat.
It is called once per HTTP request, never on the media path.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from ..core.errors import AtCapacity, RateLimited
from ..core.limits import KeyedRateLimiter, Rate

logger = logging.getLogger(__name__)

STORE_NAME = "admission.sqlite3"
_PURGE_EVERY = 256  # takes between sweeps of idle buckets
_BUSY_TIMEOUT_S = 2.0


def redis_failures() -> tuple[type[BaseException], ...]:
    """What a Redis call raises when Redis is away. The client library is imported only where
    Redis is used, so a gateway without ``REDIS_URL`` never loads it."""
    from redis.exceptions import RedisError

    return (RedisError, OSError)


class SharedAdmission(Protocol):
    async def take(self, key: str, rate: Rate) -> float | None:
        """Take one token from ``key``'s bucket: None if allowed, else seconds until a retry."""

    async def reserve(self, slot: str, client: str) -> None:
        """Hold a call slot for ``client``, or raise :class:`AtCapacity` / :class:`RateLimited`."""

    async def release(self, slot: str) -> None:
        """Free a slot (idempotent)."""

    async def close(self) -> None:
        """Let go of the store (this process's slots stay until released or reclaimed)."""


def gateway_full() -> AtCapacity:
    return AtCapacity("The gateway is at capacity; try again shortly.", headers={"Retry-After": "5"})


def client_full(limit: int) -> RateLimited:
    return RateLimited(f"This client already has {limit} calls in progress (MAX_CALLS_PER_CLIENT); "
                       "hang one up first.", code="too_many_calls", headers={"Retry-After": "5"})


class LocalAdmission:
    """One process's admission, in memory."""

    def __init__(self, max_calls: int, max_calls_per_client: int, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._max_calls = max_calls
        self._max_per_client = max_calls_per_client
        self._clock = clock
        self._limiters: dict[Rate, KeyedRateLimiter] = {}
        self._slots: dict[str, str] = {}  # slot → client
        self._per_client: collections.Counter[str] = collections.Counter()

    async def take(self, key: str, rate: Rate) -> float | None:
        limiter = self._limiters.get(rate)
        if limiter is None:
            limiter = self._limiters[rate] = KeyedRateLimiter(rate.per_minute, rate.burst)
        return limiter.take(key, self._clock())

    async def reserve(self, slot: str, client: str) -> None:
        if len(self._slots) >= self._max_calls:
            raise gateway_full()
        if self._max_per_client and self._per_client[client] >= self._max_per_client:
            raise client_full(self._max_per_client)
        self._slots[slot] = client
        self._per_client[client] += 1

    async def release(self, slot: str) -> None:
        client = self._slots.pop(slot, None)
        if client is not None:
            self._per_client[client] -= 1
            if not self._per_client[client]:
                del self._per_client[client]

    async def close(self) -> None:
        pass


_SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (
    key TEXT PRIMARY KEY, tokens REAL NOT NULL, updated REAL NOT NULL, full_at REAL NOT NULL,
    granted INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS buckets_full_at ON buckets (full_at);
CREATE TABLE IF NOT EXISTS slots (slot TEXT PRIMARY KEY, client TEXT NOT NULL, pid INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS slots_client ON slots (client);
CREATE INDEX IF NOT EXISTS slots_pid ON slots (pid);
"""

# A token bucket in one UPSERT: in SET every column still has its old value, so REFILLED is the
# bucket refilled up to now, before this request takes its token (if there is one).
_REFILLED = "min(:burst, tokens + max(0.0, :now - updated) * :rate)"
_TAKE = f"""
INSERT INTO buckets (key, tokens, updated, full_at, granted)
VALUES (:key, :burst - 1, :now, :now + 1 / :rate, 1)
ON CONFLICT (key) DO UPDATE SET
    tokens = {_REFILLED} - ({_REFILLED} >= 1),
    granted = ({_REFILLED} >= 1),
    updated = :now,
    full_at = :now + (:burst - ({_REFILLED} - ({_REFILLED} >= 1))) / :rate
RETURNING tokens, granted
"""
_RESERVE = """
INSERT INTO slots (slot, client, pid)
SELECT :slot, :client, :pid
WHERE (SELECT count(*) FROM slots) < :max_calls
  AND (:per_client = 0 OR (SELECT count(*) FROM slots WHERE client = :client) < :per_client)
"""


class SqliteAdmission:
    """The workers of one host sharing one SQLite file (WAL; no fsync: it lives as long as the gateway).

    The clock is ``time.monotonic``, which Linux keeps system-wide, so every worker's buckets
    refill on the same time line.
    """

    def __init__(self, path: Path, max_calls: int, max_calls_per_client: int, *, pid: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._db = _connect(path, create=False)
        self._max_calls = max_calls
        self._max_per_client = max_calls_per_client
        self._pid = os.getpid() if pid is None else pid
        self._clock = clock
        self._takes = 0

    @staticmethod
    def create(path: Path) -> None:
        """Make the store (the supervisor, before it starts the workers)."""
        db = _connect(path, create=True)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
        finally:
            db.close()

    @staticmethod
    def reclaim(path: Path, pid: int) -> int:
        """Free the slots of worker ``pid`` (it died without releasing them); how many there were."""
        db = _connect(path, create=False)
        try:
            return db.execute("DELETE FROM slots WHERE pid = ?", (pid,)).rowcount
        finally:
            db.close()

    async def take(self, key: str, rate: Rate) -> float | None:
        now = self._clock()
        per_s = rate.per_second
        tokens, granted = self._execute(_TAKE, {"key": key, "burst": rate.burst, "now": now,
                                                "rate": per_s}).fetchone()
        self._takes += 1
        if self._takes % _PURGE_EVERY == 0:  # idle buckets are full again: forget them
            self._execute("DELETE FROM buckets WHERE full_at <= :now", {"now": now})
        return None if granted else max(0.0, (1 - tokens) / per_s)

    async def reserve(self, slot: str, client: str) -> None:
        inserted = self._execute(_RESERVE, {"slot": slot, "client": client, "pid": self._pid,
                                            "max_calls": self._max_calls,
                                            "per_client": self._max_per_client}).rowcount
        if inserted == 1:
            return
        (total,) = self._execute("SELECT count(*) FROM slots", {}).fetchone()
        raise gateway_full() if total >= self._max_calls else client_full(self._max_per_client)

    async def release(self, slot: str) -> None:
        self._execute("DELETE FROM slots WHERE slot = :slot", {"slot": slot})

    async def close(self) -> None:
        self._db.close()

    def _execute(self, sql: str, parameters: dict[str, object]) -> sqlite3.Cursor:
        """One statement; while another worker holds the write lock (for a few µs), retry after
        20 µs, 40 µs… — SQLite's own busy handler would sleep a whole millisecond first."""
        delay, deadline = 20e-6, 0.0
        while True:
            try:
                return self._db.execute(sql, parameters)
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                now = time.monotonic()
                deadline = deadline or now + _BUSY_TIMEOUT_S
                if now > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 1e-3)


def _connect(path: Path, *, create: bool) -> sqlite3.Connection:
    mode = "rwc" if create else "rw"  # a worker never makes a store of its own by mistake
    db = sqlite3.connect(f"file:{path}?mode={mode}", uri=True, timeout=0.0 if not create else _BUSY_TIMEOUT_S,
                         isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA synchronous=OFF")
    return db


def store_path(runtime_dir: Path) -> Path:
    return runtime_dir / STORE_NAME


# --- many instances: one Redis -----------------------------------------------------------------

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
