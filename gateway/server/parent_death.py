"""Child processes (workers, the local engine) end when the process that started them dies.

A supervisor killed with SIGKILL (the OOM killer, ``kill -9``) cannot pass SIGTERM on; its
workers would keep the port and their calls, orphaned, and the engine its gigabytes. Linux's
``PR_SET_PDEATHSIG`` has the kernel send the child SIGTERM instead, so it shuts down as it
would on a normal stop (calls are told, then drained).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Mapping

PARENT_PID_ENV = "GATEWAY_PARENT_PID"
_PR_SET_PDEATHSIG = 1


def child_env(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` for a child that should follow this process: it names us as its parent."""
    return {**env, PARENT_PID_ENV: str(os.getpid())}


def follow_parent() -> None:
    """In a child started with :func:`child_env`: SIGTERM ourselves when that parent dies."""
    expected = os.environ.pop(PARENT_PID_ENV, None)
    if expected is None or not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
        return  # not allowed here (odd sandbox): the parent's own SIGTERM still works
    if os.getppid() != int(expected):  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)
