"""Every core: one gateway process per core, and requests routed to the process owning a call.

aiortc is single-threaded Python, so ``--workers N`` runs N processes that all accept on the
same port (SO_REUSEPORT: the kernel spreads connections). A call lives in one worker, so its
ids name that worker, then the instance (``INSTANCE_ID``, for a front routing between hosts) —
``ek_w1_gw0_…`` (the client secret that will create it), ``rtc_w1_gw0_…`` (the call),
``rsm_w1_gw0_…`` (its resume token) — and a worker receiving a request for another's call
forwards it over that worker's private Unix socket (:mod:`.forwarding`). Limits hold for the
whole gateway through one admission store the supervisor creates before the workers
(:mod:`.admission`).

A worker that dies (a crash, the OOM killer) loses its calls — their browsers see the call end —
while the other workers' calls go on. The supervisor logs why it died (exit code or signal),
reclaims its call slots, removes its socket (requests for its calls are then answered as for any
unknown call), and starts a replacement with the same index after a backoff; the replacement
counts itself in ``gateway_worker_restarts_total``. Too many deaths in a short time (a crash
loop, :class:`~gateway.core.worker_restarts.WorkerRestarts`) stop the gateway with
:class:`WorkerCrashLoop`, as does a worker that fails before it ever served during the gateway's
start. SIGTERM stops every worker (they drain their calls); nothing is restarted from then on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import sys
import time
from asyncio.subprocess import Process
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..config import Config
from ..core.worker_restarts import WorkerRestarts
from .admission import SqliteAdmission, store_path
from .client_identity import FORWARDED_HEADER, IDENTITY_HEADER
from .client_identity import is_internal as is_forwarded
from .parent_death import child_env

logger = logging.getLogger(__name__)

# Kept for modules that name the internal headers from here (see .client_identity).
INTERNAL_HEADER = FORWARDED_HEADER
CLIENT_IP_HEADER = IDENTITY_HEADER
__all__ = ["CLIENT_IP_HEADER", "INTERNAL_HEADER", "WorkerCrashLoop", "exit_cause", "instance_of", "is_forwarded", "owner",
           "restarts_of", "socket_path", "supervise", "tag"]

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


class WorkerCrashLoop(RuntimeError):
    """Workers kept dying (or one could not start): the gateway stopped; the message says why."""


def restarts_of(config: Config) -> WorkerRestarts:
    return WorkerRestarts(config.worker_max_restarts, config.worker_restart_window_s, config.worker_restart_backoff_s)


def exit_cause(returncode: int) -> str:
    """``-9`` → ``killed by SIGKILL``; ``1`` → ``exit code 1``."""
    if returncode >= 0:
        return f"exit code {returncode}"
    try:
        return f"killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"killed by signal {-returncode}"


async def supervise(argv: Sequence[str], workers: int, runtime_dir: Path, stop: asyncio.Event,
                    restarts: WorkerRestarts | None = None) -> None:
    """The parent: make the shared admission store in ``runtime_dir`` (private, made by the
    caller), start one worker process per core, replace those that die, pass SIGTERM on, and
    wait for them. Raises :class:`WorkerCrashLoop` once ``restarts`` says to give up."""
    store = store_path(runtime_dir)
    SqliteAdmission.create(store)
    await _Pool(argv, runtime_dir, store, restarts or WorkerRestarts(0, 60.0, 0.0)).run(workers, stop)


class _Pool:
    def __init__(self, argv: Sequence[str], runtime_dir: Path, store: Path, restarts: WorkerRestarts) -> None:
        self._argv = argv
        self._runtime_dir = runtime_dir
        self._store = store
        self._restarts = restarts
        self._processes: dict[int, Process] = {}  # worker index → its current process
        self._exits: dict[asyncio.Future[int], int] = {}  # a process's wait() → its worker index
        self._backoffs: dict[asyncio.Future[None], int] = {}  # a replacement's wait → its worker index

    async def run(self, workers: int, stop: asyncio.Event) -> None:
        stopping = asyncio.ensure_future(stop.wait())
        try:
            for index in range(workers):
                await self._start(index)
            logger.info("%d workers started (pids %s)", workers,
                        ", ".join(str(p.pid) for p in self._processes.values()))
            while True:
                watched: set[asyncio.Future[Any]] = {stopping, *self._exits, *self._backoffs}
                done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
                for exited in [future for future in done if future in self._exits]:
                    self._died(self._exits.pop(exited), stopping=stopping in done)
                if stopping in done:
                    return
                for backoff in [future for future in done if future in self._backoffs]:
                    await self._start(self._backoffs.pop(backoff))
        finally:
            stopping.cancel()
            await self._stop_all()

    async def _start(self, index: int) -> None:
        replaced = self._restarts.replaced[index]
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", *self._argv, "--worker-index", str(index),
            "--runtime-dir", str(self._runtime_dir), "--worker-restarts", str(replaced),
            env=child_env({**os.environ, "WORKERS": "1"}))
        self._processes[index] = process
        self._exits[asyncio.ensure_future(process.wait())] = index
        if replaced:
            logger.warning("worker %d replaced (pid %d, restart %d)", index, process.pid, replaced)

    def _died(self, index: int, *, stopping: bool) -> None:
        """Log why worker ``index`` exited and free what it held; unless the gateway is stopping,
        schedule its replacement or raise :class:`WorkerCrashLoop`."""
        process = self._processes[index]
        assert process.returncode is not None
        cause = exit_cause(process.returncode)
        served = _forget_socket(socket_path(self._runtime_dir, index))
        _reclaim(self._store, process.pid)
        if stopping:
            logger.info("worker %d (pid %d) exited (%s) as the gateway stops", index, process.pid, cause)
            return
        if not served and not self._restarts.replaced[index]:
            logger.error("worker %d (pid %d) exited during start-up (%s): stopping the gateway", index,
                         process.pid, cause)
            raise WorkerCrashLoop(f"worker {index} could not start ({cause})")
        delay = self._restarts.died(index, time.monotonic())
        if delay is None and not self._restarts.max_restarts:
            logger.error("worker %d (pid %d) died (%s): WORKER_MAX_RESTARTS=0, stopping the gateway", index,
                         process.pid, cause)
            raise WorkerCrashLoop(f"worker {index} died ({cause})")
        if delay is None:
            restarts = self._restarts
            logger.error("worker %d (pid %d) died (%s): %d worker death(s) within %.0f s, more than "
                         "WORKER_MAX_RESTARTS=%d replaces: a crash loop, stopping the gateway", index, process.pid,
                         cause, restarts.recent_deaths, restarts.window_s, restarts.max_restarts)
            raise WorkerCrashLoop(f"workers kept dying (the last: worker {index}, {cause})")
        logger.error("worker %d (pid %d) died (%s): its calls are lost, the other workers' go on; a new worker %d "
                     "starts in %.1f s", index, process.pid, cause, index, delay)
        self._backoffs[asyncio.ensure_future(asyncio.sleep(delay))] = index

    async def _stop_all(self) -> None:
        for backoff in self._backoffs:
            backoff.cancel()
        for process in self._processes.values():
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
        await asyncio.gather(*self._exits, *self._backoffs, return_exceptions=True)


def _forget_socket(path: Path) -> bool:
    """Remove a dead worker's socket (forwarding then treats its calls as unknown); whether it
    had one, i.e. whether the worker ever served."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def _reclaim(store: Path, pid: int) -> None:
    freed = SqliteAdmission.reclaim(store, pid)
    if freed:
        logger.warning("reclaimed %d call slot(s) of worker pid %d", freed, pid)
