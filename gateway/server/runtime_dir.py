"""The workers' private directory: their Unix sockets and the shared admission store.

Whoever can reach a worker's socket can send it "forwarded" requests that claim any client
identity, and whoever can replace it can read other people's offers, so the directory must be
ours alone. Each start makes a fresh one with an unpredictable name and mode 0700
(``tempfile.mkdtemp``), inside ``RUNTIME_DIR`` when it is set — which must then be a real
directory (not a symlink) owned by this user and not writable by group or others, or the
gateway refuses to start — or inside the system's temporary directory.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from ..config import ConfigError

PREFIX = "gateway-"
_SOCKET_PATH_MAX = 107  # sun_path is 108 bytes with its terminating NUL
_LONGEST_NAME = "/gateway-xxxxxxxx/worker-63.sock"


def make_private_dir(parent: Path | None) -> Path:
    """A new 0700 directory for this run of the gateway (the caller removes it at exit)."""
    if parent is not None:
        parent = parent.absolute()
        if len(os.fsencode(parent)) + len(_LONGEST_NAME) > _SOCKET_PATH_MAX:
            raise ConfigError(f"RUNTIME_DIR {parent} is too long: the workers' Unix socket paths must fit in "
                              f"{_SOCKET_PATH_MAX} bytes")
        if not os.path.lexists(parent):
            parent.mkdir(mode=0o700, parents=True)
        check_private(parent, setting="RUNTIME_DIR")
    return Path(tempfile.mkdtemp(prefix=PREFIX, dir=parent))


def check_private(path: Path, *, setting: str = "RUNTIME_DIR", exclusive: bool = False) -> None:
    """:class:`ConfigError` unless ``path`` is a directory of ours that others cannot write to
    (``exclusive``: that others cannot enter at all, as a worker expects of the one it is given)."""
    try:
        info = os.lstat(path)
    except OSError as exc:
        raise ConfigError(f"{setting} {path} cannot be used: {exc.strerror}") from None
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{setting} {path} must be a directory (not a symlink or a file)")
    if info.st_uid != os.geteuid():
        raise ConfigError(f"{setting} {path} belongs to uid {info.st_uid}, not to this user ({os.geteuid()})")
    forbidden = 0o077 if exclusive else 0o022
    if info.st_mode & forbidden:
        raise ConfigError(f"{setting} {path} has mode {stat.S_IMODE(info.st_mode):o}: it must not be "
                          f"{'accessible' if exclusive else 'writable'} by group or others")
