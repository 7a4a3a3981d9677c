"""Every core: one gateway process per core, and requests routed to the process owning a call.

aiortc is single-threaded Python, so ``--workers N`` runs N processes that all accept on the
same port (SO_REUSEPORT: the kernel spreads connections). A call lives in one worker, so its
ids name that worker, then the instance (``INSTANCE_ID``, for a front routing between hosts) —
``ek_w1_gw0_…`` (the client secret that will create it), ``rtc_w1_gw0_…`` (the call),
``rsm_w1_gw0_…`` (its resume token) — and a worker receiving a request for another's call
forwards it over that worker's private Unix socket (:mod:`.forwarding`). Limits hold for the
whole gateway through one admission store the supervisor creates before the workers
(:mod:`.admission`); a worker that dies has its call slots reclaimed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from .admission import SqliteAdmission, store_path
from .client_identity import FORWARDED_HEADER, IDENTITY_HEADER
from .client_identity import is_internal as is_forwarded
from .parent_death import child_env

logger = logging.getLogger(__name__)

# Kept for modules that name the internal headers from here (see .client_identity).
INTERNAL_HEADER = FORWARDED_HEADER
CLIENT_IP_HEADER = IDENTITY_HEADER
__all__ = ["CLIENT_IP_HEADER", "INTERNAL_HEADER", "instance_of", "is_forwarded", "owner", "socket_path", "supervise", "tag"]

# ``rtc_w<worker>_<instance>_…`` (an instance id is never w<digits>): either part may be absent.
_ID_TAG = re.compile(r"^(?:ek|rtc|rsm)_(?:w(\d+)_)?(?:(?!w\d+_)([a-z0-9][a-z0-9-]{0,39})_)?")


def tag(prefix: str, worker: int | None, instance: str | None = None) -> str:
    """``ek_`` → ``ek_w2_<instance>_`` in worker 2 of ``instance``; a part is left out when None."""
    return prefix + ("" if worker is None else f"w{worker}_") + (f"{instance}_" if instance else "")


def owner(identifier: str) -> int | None:
    """The worker named in an id (within its instance), or None."""
    match = _ID_TAG.match(identifier)
    return int(match.group(1)) if match and match.group(1) else None


def instance_of(identifier: str) -> str | None:
    """The instance named in an id, or None."""
    match = _ID_TAG.match(identifier)
    return match.group(2) if match else None


def socket_path(runtime_dir: Path, worker: int) -> Path:
    return runtime_dir / f"worker-{worker}.sock"


async def supervise(argv: Sequence[str], workers: int, runtime_dir: Path, stop: asyncio.Event) -> None:
    """The parent: make the shared admission store in ``runtime_dir`` (private, made by the
    caller), start one worker process per core, pass SIGTERM on, and wait for them. A worker
    that exits takes the gateway down with it; its call slots are reclaimed at once."""
    store = store_path(runtime_dir)
    SqliteAdmission.create(store)
    processes = [await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", *argv, "--worker-index", str(index), "--runtime-dir", str(runtime_dir),
        env=child_env({**os.environ, "WORKERS": "1"})) for index in range(workers)]
    logger.info("%d workers started (pids %s)", workers, ", ".join(str(p.pid) for p in processes))
    waits = {asyncio.ensure_future(p.wait()): p for p in processes}
    stopping = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait({stopping, *waits}, return_when=asyncio.FIRST_COMPLETED)
    if stopping not in done:
        logger.error("a worker exited (status %s): stopping the gateway", [p.returncode for p in processes])
        for wait in done:
            _reclaim(store, waits[wait].pid)
    for process in processes:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
    await asyncio.gather(*waits)
    stopping.cancel()


def _reclaim(store: Path, pid: int) -> None:
    freed = SqliteAdmission.reclaim(store, pid)
    if freed:
        logger.warning("reclaimed %d call slot(s) of worker pid %d", freed, pid)
