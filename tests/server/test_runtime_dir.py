"""The workers' socket directory is private: fresh, unpredictable, 0700, inside a parent that is
ours and not writable by others — or the gateway refuses to start, saying why."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from gateway.config import ConfigError
from gateway.server.runtime_dir import check_private, make_private_dir
from tests.conftest import free_port
from tests.fake_upstream import FakeRealtimeServer
from tests.server.page_client import ROOT, start_gateway_process

NOBODY = 65534


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_a_fresh_private_directory_each_time(tmp_path: Path) -> None:
    parent = tmp_path / "run" / "gateway"  # missing: made 0700
    first, second = make_private_dir(parent), make_private_dir(parent)
    assert first != second and first.parent == second.parent == parent
    assert _mode(parent) == 0o700 and _mode(first) == 0o700 and _mode(second) == 0o700
    default = make_private_dir(None)
    try:
        assert default.parent == Path(tempfile.gettempdir()) and _mode(default) == 0o700
        assert default.name.startswith("gateway-") and len(default.name) >= len("gateway-") + 8
    finally:
        default.rmdir()


@pytest.mark.parametrize("case", ["world-writable", "group-writable", "someone else's", "symlink", "a file"])
def test_an_unsafe_configured_directory_is_refused(tmp_path: Path, case: str) -> None:
    target = tmp_path / "runtime"
    if case == "a file":
        target.write_text("")
    elif case == "symlink":
        (tmp_path / "real").mkdir(mode=0o700)
        target.symlink_to(tmp_path / "real")
    else:
        target.mkdir(mode=0o700)
        if case == "world-writable":
            target.chmod(0o1777)
        elif case == "group-writable":
            target.chmod(0o770)
        else:
            os.chown(target, NOBODY, NOBODY)
    with pytest.raises(ConfigError, match="RUNTIME_DIR"):
        make_private_dir(target)


def test_a_worker_wants_its_directory_exclusive(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    check_private(private, exclusive=True)
    private.chmod(0o750)
    check_private(private)  # fine as a parent…
    with pytest.raises(ConfigError, match="accessible by group or others"):
        check_private(private, exclusive=True)  # …not as a worker's own directory


def test_the_gateway_refuses_to_start_with_an_unsafe_runtime_dir(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # anyone could plant a socket or a symlink here
    result = subprocess.run([sys.executable, "-m", "gateway", "--workers", "2", "--upstream", "url",
                             "--upstream-url", "ws://127.0.0.1:9/v1/realtime", "--openai-api-key", "sk-test",
                             "--host", "127.0.0.1", "--port", str(free_port()), "--runtime-dir", str(shared)],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "RUNTIME_DIR" in result.stderr and "writable by group or others" in result.stderr
    assert not any(shared.iterdir())


def test_a_runtime_dir_too_long_for_unix_sockets_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="too long"):
        make_private_dir(tmp_path / ("x" * 80))


async def test_sockets_live_in_a_private_directory_removed_at_exit(fake_upstream: FakeRealtimeServer) -> None:
    parent = Path(tempfile.mkdtemp(prefix="rt-"))  # short: Unix socket paths are limited to 107 bytes
    try:
        gateway = await start_gateway_process(fake_upstream, parent)
        try:
            (private,) = parent.iterdir()
            assert _mode(parent) == 0o700 and _mode(private) == 0o700
            assert private.name.startswith("gateway-")
            assert sorted(p.name for p in private.glob("*.sock")) == ["worker-0.sock", "worker-1.sock"]
        finally:
            assert gateway.stop() == 0
        assert not any(parent.iterdir())
    finally:
        parent.rmdir()
