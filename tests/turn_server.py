"""A real coturn on loopback for tests: random secret, free ports, its log kept for assertions."""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class TurnServer:
    port: int
    secret: str
    realm: str
    log: Path
    process: subprocess.Popen

    @property
    def url(self) -> str:
        return f"turn:127.0.0.1:{self.port}?transport=udp"

    @property
    def tcp_url(self) -> str:
        return f"turn:127.0.0.1:{self.port}?transport=tcp"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def turn_server(tmp_path: Path) -> Iterator[TurnServer]:
    binary = shutil.which("turnserver")
    if binary is None:
        pytest.fail("coturn is not installed: run scripts/setup.sh test (apt-get install coturn)")
    port, secret, log = _free_port(), secrets.token_hex(16), tmp_path / "turnserver.log"
    relay_low = 49160 + (port % 200) * 4  # a small relay range of our own, apart from other runs
    process = subprocess.Popen([
        binary, "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", f"--listening-port={port}",
        f"--min-port={relay_low}", f"--max-port={relay_low + 60}", "--use-auth-secret",
        f"--static-auth-secret={secret}", "--realm=gateway.test", "--fingerprint", "--no-tls", "--no-dtls",
        "--no-cli", "--allow-loopback-peers", f"--log-file={log}", "--simple-log", "--no-stdout-log", "-v",
        f"--pidfile={tmp_path / 'turnserver.pid'}",
    ], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while "Total General servers" not in (log.read_text(errors="replace") if log.exists() else ""):
            assert process.poll() is None, "turnserver exited: " + (log.read_text() if log.exists() else "")
            assert time.monotonic() < deadline, "turnserver did not start"
            time.sleep(0.1)
        yield TurnServer(port, secret, "gateway.test", log, process)
    finally:
        process.terminate()
        process.wait(5)
