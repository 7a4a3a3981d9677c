"""Two hosts in network namespaces, joined by a link with loss, delay, jitter, cuts and re-addressing.

    with NetBed() as bed:
        bed.set_delay(50, jitter_ms=20)
        bed.set_loss(10)                      # % of UDP dropped on arrival, both hosts
        server = bed.spawn(bed.server, [sys.executable, "-m", "gateway", "--host", bed.server.address])
        client = bed.spawn(bed.client, [...])
        bed.cut(5.0)                          # nothing passes for 5 s, then the loss setting returns

Loss is nftables in each namespace's *input* hook (an output drop makes sendto() fail, which
real networks never do); delay and jitter come from ``relay.py`` between two TUN devices.
Needs root, nft, ip and /dev/net/tun; :func:`require` skips a test with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

PREFIX = "nbed"
ROOT = Path(__file__).resolve().parents[2]


def require() -> None:
    """Skip (with the reason) where kernel networking is not ours to configure."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (scripts/setup_net.sh installs it)")
    if not os.path.exists("/dev/net/tun"):
        pytest.skip("/dev/net/tun is missing: the delay relay needs TUN devices")


def _sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), check=check, capture_output=True, text=True)


@dataclass
class Host:
    namespace: str
    device: str
    address: str
    peer_address: str

    def exec_argv(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *argv]


def cleanup_leftovers() -> None:
    """Remove namespaces of earlier runs whose owning process is gone."""
    listing = _sh("ip", "netns", "list", check=False).stdout.split()
    for name in listing:
        if name.startswith(PREFIX):
            owner = name[len(PREFIX):].split("x")[0]
            if owner.isdigit() and not os.path.exists(f"/proc/{owner}"):
                _sh("ip", "netns", "del", name, check=False)


class NetBed:
    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed)
        tag = f"{PREFIX}{os.getpid()}x{self._rng.randrange(1 << 20):x}"
        subnet = f"10.{self._rng.randrange(200, 250)}.{self._rng.randrange(1, 255)}"
        self.client = Host(f"{tag}c", "tunc", f"{subnet}.1", f"{subnet}.2")
        self.server = Host(f"{tag}s", "tuns", f"{subnet}.2", f"{subnet}.1")
        self._workdir = Path(tempfile.mkdtemp(prefix="netbed-"))
        self._relay_config = self._workdir / "relay.json"
        self._relay: subprocess.Popen[str] | None = None
        self._processes: list[subprocess.Popen[str]] = []
        self.loss_percent = 0

    # --- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> NetBed:
        cleanup_leftovers()
        try:
            for host in (self.client, self.server):
                _sh("ip", "netns", "add", host.namespace)
                _sh("ip", "-n", host.namespace, "link", "set", "lo", "up")
            self._relay_config.write_text(json.dumps({
                "namespace_a": self.client.namespace, "device_a": self.client.device,
                "namespace_b": self.server.namespace, "device_b": self.server.device,
                "seed": self._rng.randrange(1 << 30), "delay_ms": 0, "jitter_ms": 0, "reorder": True}))
            self._relay = subprocess.Popen([sys.executable, "-m", "tests.netbed.relay", str(self._relay_config)],
                                           cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            assert self._relay.stdout is not None
            if self._relay.stdout.readline().strip() != "ready":
                raise RuntimeError(f"delay relay failed: {self._relay.stderr.read() if self._relay.stderr else ''}")
            for host in (self.client, self.server):
                ns = host.namespace
                _sh("ip", "-n", ns, "addr", "add", f"{host.address}/32", "dev", host.device)
                _sh("ip", "-n", ns, "link", "set", host.device, "up")
                _sh("ip", "-n", ns, "route", "add", f"{host.peer_address}/32", "dev", host.device)
                self._nft(host, "add table inet netbed")
                self._nft(host, "add chain inet netbed input { type filter hook input priority 0 ; policy accept ; }")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for process in self._processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        if self._relay is not None and self._relay.poll() is None:
            self._relay.terminate()
            self._relay.wait(5)
        for host in (self.client, self.server):
            _sh("ip", "netns", "del", host.namespace, check=False)
        shutil.rmtree(self._workdir, ignore_errors=True)

    # --- link conditions -------------------------------------------------------------------

    def _nft(self, host: Host, command: str) -> None:
        _sh("ip", "netns", "exec", host.namespace, "nft", *command.split())

    def set_loss(self, percent: int) -> None:
        """Drop ``percent`` % of the UDP packets arriving at each host (media and ICE, not TCP)."""
        self.loss_percent = percent
        for host in (self.client, self.server):
            self._nft(host, "flush chain inet netbed input")
            if percent > 0:
                self._nft(host, f'add rule inet netbed input iifname != "lo" meta l4proto udp '
                                f"numgen random mod 100 < {percent} drop")

    def cut(self, seconds: float | None = None) -> None:
        """Drop everything (TCP too) arriving at either host; with ``seconds``, restore after."""
        for host in (self.client, self.server):
            self._nft(host, "flush chain inet netbed input")
            self._nft(host, 'add rule inet netbed input iifname != "lo" drop')
        if seconds is not None:
            time.sleep(seconds)
            self.set_loss(self.loss_percent)

    def restore(self) -> None:
        self.set_loss(self.loss_percent)

    def set_delay(self, delay_ms: float, jitter_ms: float = 0.0, reorder: bool = True) -> None:
        """One-way delay ± jitter, each direction; ``reorder=False`` keeps packets in order."""
        config = json.loads(self._relay_config.read_text())
        config.update(delay_ms=delay_ms, jitter_ms=jitter_ms, reorder=reorder)
        tmp = self._relay_config.with_suffix(".tmp")
        tmp.write_text(json.dumps(config))
        tmp.replace(self._relay_config)
        time.sleep(0.4)  # the relay re-reads its settings every 0.2 s

    def move(self, host: Host, new_address: str) -> None:
        """Give ``host`` a new address (a phone switching networks); routes follow."""
        other = self.server if host is self.client else self.client
        _sh("ip", "-n", host.namespace, "addr", "add", f"{new_address}/32", "dev", host.device)
        _sh("ip", "-n", host.namespace, "addr", "del", f"{host.address}/32", "dev", host.device)
        _sh("ip", "-n", other.namespace, "route", "add", f"{new_address}/32", "dev", other.device)
        host.address = new_address
        other.peer_address = new_address

    # --- processes -------------------------------------------------------------------------

    def spawn(self, host: Host, argv: list[str], **kwargs: object) -> subprocess.Popen[str]:
        """Start ``argv`` inside ``host``'s namespace (stopped when the bed closes)."""
        kwargs.setdefault("cwd", ROOT)
        kwargs.setdefault("text", True)
        process = subprocess.Popen(host.exec_argv(argv), **kwargs)  # type: ignore[call-overload]
        self._processes.append(process)
        return process
