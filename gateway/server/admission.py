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
a worker that died. A cluster of hosts shares :class:`~.redis_admission.RedisAdmission`
(``REDIS_URL``), in a module of its own. Admission is called once per HTTP request, never on the
media path.
"""

from __future__ import annotations

import collections
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from ..core.errors import AtCapacity, RateLimited
from ..core.limits import KeyedRateLimiter, Rate

STORE_NAME = "admission.sqlite3"
_PURGE_EVERY = 256  # takes between sweeps of idle buckets
_BUSY_TIMEOUT_S = 2.0


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
