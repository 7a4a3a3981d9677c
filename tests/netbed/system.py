"""The few kernel facilities the bed stands on: commands, namespace entry, and whether they work here.

Everything that touches the host system goes through this module, so a machine that cannot run
the bed (not root, no ``nft``, no ``/dev/net/tun``) is detected in one place with one clear reason.
"""

from __future__ import annotations

import ctypes
import fcntl
import functools
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

PREFIX = "nbed-"
"""Every namespace the bed creates starts with this; leftovers of crashed runs are found by it."""

LOCK_DIR = Path("/run/netbed")
"""One lock file per live bed (held with flock): a bed whose lock is free belongs to a dead process."""

CLONE_NEWNET = 0x40000000
T = TypeVar("T")


class NetbedUnavailable(RuntimeError):
    """This machine cannot run the bed; the message says why (tests see a skip instead)."""


class CommandError(RuntimeError):
    """A system command failed; the message carries its stderr so the cause is visible in the test."""


def sh(*args: str, input: str | None = None, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(args), input=input, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise CommandError(f"{' '.join(args)} exited {result.returncode}: {result.stderr.strip() or result.stdout.strip()}")
    return result


def enter_namespace(name: str) -> None:
    """Move the *calling thread* into namespace ``name`` (setns(2) is per thread on Linux)."""
    libc = ctypes.CDLL(None, use_errno=True)
    with open(f"/var/run/netns/{name}") as handle:
        if libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns({name}) failed")


def call_in_namespace(name: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` in a fresh thread that lives inside namespace ``name``; return or raise its result.

    A throwaway thread, never a pooled one: a pooled thread would stay in the namespace afterwards.
    Sockets and TUN descriptors made by ``fn`` keep their namespace after the thread ends.
    """
    outcome: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            enter_namespace(name)
            outcome.append(fn())
        except BaseException as error:  # handed to the caller's thread below
            failure.append(error)

    thread = threading.Thread(target=target, name=f"netns:{name}", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]


def hold_lock(tag: str) -> int:
    """Take bed ``tag``'s lock for as long as the returned descriptor stays open (or the process lives)."""
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    fd = os.open(LOCK_DIR / f"{tag}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def release_lock(tag: str, fd: int) -> None:
    (LOCK_DIR / f"{tag}.lock").unlink(missing_ok=True)
    os.close(fd)


def lock_is_free(tag: str) -> bool:
    """True when no live process holds bed ``tag``: its namespaces are leftovers."""
    try:
        fd = os.open(LOCK_DIR / f"{tag}.lock", os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


@functools.cache
def unavailable_reason() -> str | None:
    """Why the bed cannot run on this machine, or ``None`` when it can (probed once per process)."""
    if os.geteuid() != 0:
        return "the network test bed needs root (network namespaces, nftables, TUN devices)"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (scripts/setup_net.sh installs iproute2 and nftables)"
    try:
        os.close(os.open("/dev/net/tun", os.O_RDWR))
    except OSError as error:
        return f"/dev/net/tun is unusable ({error.strerror}): the delay relay needs TUN devices"
    tag = f"{os.getpid()}xprobe"
    probe = f"{PREFIX}{tag}-probe"
    lock = hold_lock(tag)
    try:
        sh("ip", "netns", "add", probe)
        sh("ip", "netns", "exec", probe, "nft", "add table inet netbed_probe")
    except (CommandError, OSError) as error:
        return f"network namespaces or nftables do not work here: {error}"
    finally:
        sh("ip", "netns", "del", probe, check=False)
        release_lock(tag, lock)
    return None


def require() -> None:
    """Skip the calling test, with the reason, where the bed cannot run (outside pytest: raise)."""
    reason = unavailable_reason()
    if reason is None:
        return
    if "pytest" in sys.modules:
        import pytest  # the bed itself does not depend on pytest (bench scripts use it too)

        pytest.skip(reason)
    raise NetbedUnavailable(reason)
