"""Removing namespaces: a bed's own on close, and those left behind by test runs that crashed.

A namespace outlives ``ip netns del`` while any process is inside it, so processes go first.
Leftovers are recognised by the :data:`~tests.netbed.system.PREFIX` and a free bed lock (whoever
made them is dead), never by age or by guessing, so parallel runs never clean each other up.
"""

from __future__ import annotations

import os
import signal
import time

from .system import LOCK_DIR, PREFIX, lock_is_free, sh


def namespaces() -> list[str]:
    """Names from ``ip netns list`` (each line is ``name`` or ``name (id: N)``)."""
    return [line.split()[0] for line in sh("ip", "netns", "list").stdout.splitlines() if line.strip()]


def namespace_pids(namespace: str) -> list[int]:
    result = sh("ip", "netns", "pids", namespace, check=False)
    return [int(pid) for pid in result.stdout.split() if pid.isdigit() and int(pid) != os.getpid()]


def empty_namespace(namespace: str, grace: float = 2.0) -> None:
    """SIGTERM everything still inside ``namespace``, SIGKILL what remains after ``grace`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = namespace_pids(namespace)
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + (grace if sig == signal.SIGTERM else 5.0)
        while pids and time.monotonic() < deadline:
            time.sleep(0.05)
            pids = namespace_pids(namespace)
        if not pids:
            return


def delete_namespace(namespace: str, grace: float = 2.0) -> None:
    empty_namespace(namespace, grace)
    sh("ip", "netns", "del", namespace, check=False)


def bed_tag(namespace: str) -> str | None:
    """``nbed-<tag>-<host>`` → ``<tag>``; ``None`` for namespaces that are not the bed's."""
    if not namespace.startswith(PREFIX) or "-" not in namespace[len(PREFIX):]:
        return None
    return namespace[len(PREFIX):].split("-", 1)[0]


def cleanup_leftovers() -> list[str]:
    """Delete namespaces (and their processes) of beds whose owner died; returns their names."""
    removed = []
    for namespace in namespaces():
        tag = bed_tag(namespace)
        if tag is not None and lock_is_free(tag):
            delete_namespace(namespace, grace=0.5)
            removed.append(namespace)
    if LOCK_DIR.is_dir():
        for lock in LOCK_DIR.glob("*.lock"):
            tag = lock.name.removesuffix(".lock")
            # old and free only: a lock file just created is free for an instant before its flock
            try:
                age = time.time() - lock.stat().st_mtime
            except FileNotFoundError:
                continue
            if age > 60 and lock_is_free(tag):
                lock.unlink(missing_ok=True)
    return removed
