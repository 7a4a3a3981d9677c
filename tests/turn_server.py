"""A real coturn on loopback for tests: random secret, free ports, its log kept for assertions.

``turn_server`` runs coturn the way ``turn/run-local.sh`` does (no config file, loopback peers
allowed). :func:`start_turnserver` with ``conf`` runs it from a copy of a config file, e.g. the
production ``turn/turnserver.conf`` with only its addresses, secret and files replaced.
"""

from __future__ import annotations

import re
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

READY_LINE = "Total General servers"


@dataclass
class TurnServer:
    port: int
    secret: str
    realm: str
    log: Path
    process: subprocess.Popen[bytes]
    tls_port: int | None = None

    @property
    def url(self) -> str:
        return f"turn:127.0.0.1:{self.port}?transport=udp"

    @property
    def tcp_url(self) -> str:
        return f"turn:127.0.0.1:{self.port}?transport=tcp"

    @property
    def stun_url(self) -> str:
        return f"stun:127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def usage(self) -> dict[str, dict[str, int]]:
        """coturn's accounting of ended sessions, summed by username: packets and bytes the
        client sent to the relay (rp, rb) and the relay sent it (sp, sb)."""
        totals: dict[str, dict[str, int]] = {}
        for user, *counts in re.findall(r": usage: realm=<[^>]*>, username=<([^>]*)>, "
                                        r"rp=(\d+), rb=(\d+), sp=(\d+), sb=(\d+)", self.log_text()):
            total = totals.setdefault(user, dict.fromkeys(("rp", "rb", "sp", "sb"), 0))
            for key, value in zip(("rp", "rb", "sp", "sb"), counts, strict=False):
                total[key] += int(value)
        return totals

    def refused(self, identity: str) -> bool:
        """Whether coturn refused (401) a credential minted for ``identity``."""
        return re.search(rf"user <\d+:{re.escape(identity)}>: incoming packet \w+ processed, error 401",
                         self.log_text()) is not None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _free_udp_tcp_port() -> int:
    """A port free for both UDP and TCP (coturn listens on both)."""
    for _ in range(50):
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no port free for both UDP and TCP")


def rewrite_conf(text: str, settings: Mapping[str, str | None], add: Sequence[str] = ()) -> str:
    """``text`` with the lines of each key in ``settings`` replaced by its value (None: dropped)."""
    lines = [line for line in text.splitlines() if re.split(r"[=\s]", line.strip(), maxsplit=1)[0] not in settings]
    lines += [f"{key}={value}" for key, value in settings.items() if value is not None]
    return "\n".join([*lines, *add]) + "\n"


def start_turnserver(workdir: Path, *, conf: Path | None = None, conf_add: Sequence[str] = (),
                     cert: tuple[Path, Path] | None = None) -> TurnServer:
    """Start coturn on 127.0.0.1 and wait until it serves. The caller stops it."""
    binary = shutil.which("turnserver")
    if binary is None:
        pytest.fail("coturn is not installed: run scripts/setup_turn.sh (apt-get install coturn)")
    workdir.mkdir(parents=True, exist_ok=True)
    port, secret, realm, log = _free_udp_tcp_port(), secrets.token_hex(16), "gateway.test", workdir / "turnserver.log"
    tls_port = _free_udp_tcp_port() if cert else None
    # A relay range of our own below the kernel's ephemeral ports, apart from parallel runs.
    relay_low = 20000 + (port % 120) * 100
    where = {"listening-ip": "127.0.0.1", "relay-ip": "127.0.0.1", "listening-port": str(port),
             "min-port": str(relay_low), "max-port": str(relay_low + 99), "static-auth-secret": secret,
             "realm": realm, "server-name": realm, "log-file": str(log), "pidfile": str(workdir / "turnserver.pid")}
    if conf is not None:
        files = {"cert": str(cert[0]), "pkey": str(cert[1]), "tls-listening-port": str(tls_port)} if cert else \
            {"cert": None, "pkey": None, "tls-listening-port": None}
        copy = workdir / "turnserver.conf"
        copy.write_text(rewrite_conf(conf.read_text(), {**where, **files}, [*conf_add, "no-stdout-log", "verbose"]))
        args = [binary, "-c", str(copy)]
    else:
        args = [binary, "-n", *(f"--{key}={value}" for key, value in where.items()), "--use-auth-secret",
                "--fingerprint", "--no-tls", "--no-dtls", "--no-cli", "--allow-loopback-peers",
                "--simple-log", "--no-stdout-log", "-v"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = TurnServer(port, secret, realm, log, process, tls_port)
    deadline = time.monotonic() + 10
    while READY_LINE not in server.log_text():
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            pytest.fail(f"turnserver did not start (exit {process.returncode}):\n{server.log_text()[-3000:]}")
        time.sleep(0.05)
    return server


@pytest.fixture
def turn_server(tmp_path: Path) -> Iterator[TurnServer]:
    server = start_turnserver(tmp_path / "coturn")
    try:
        yield server
    finally:
        server.stop()
