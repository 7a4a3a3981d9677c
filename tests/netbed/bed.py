"""Hosts in network namespaces joined by a link with loss, delay, jitter, cuts and re-addressing.

    with NetBed() as bed:                          # hosts "client" and "server"
        bed.set_delay(50, jitter_ms=20)            # one way, each direction (or src=/dst= one)
        bed.set_loss(10)                           # % of UDP dropped on arrival (or at= one host)
        server = bed.python(bed.server, "gateway", "--host", bed.server.address)
        server.wait_for_line("listening")
        bed.cut(5)                                 # nothing passes for 5 s, then the loss returns
        bed.move(bed.client)                       # the phone switched networks

Each host is a namespace whose only way out is a TUN device into the relay (``relay.py``), a
user-space router that delays packets per direction; loss and cuts are nftables drops in each
host's input hook (``firewall.py``). The bed's names carry a unique tag, so parallel runs never
meet, and a crashed run's namespaces are removed by the next bed (``cleanup.py``).
Needs root, ``ip``, ``nft`` and ``/dev/net/tun``: :func:`require` skips with the reason otherwise.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .cleanup import cleanup_leftovers, delete_namespace, namespace_pids
from .firewall import Counters, DropRules, Firewall
from .host import Host
from .link import BurstLoss, LinkSettings
from .process import NetProcess
from .relay_process import ROOT, RelayProcess
from .system import PREFIX, hold_lock, release_lock, require, sh

__all__ = ["NetBed", "Host", "require", "cleanup_leftovers"]

DEVICE = "netbed0"
HostRef = Host | str


class NetBed:
    def __init__(self, hosts: Sequence[str] = ("client", "server"), *, seed: int | None = None,
                 subnet: str = "10.77.0") -> None:
        """``hosts`` get ``{subnet}.1``, ``.2``… in order; ``seed`` makes jitter and tags' rng repeatable
        (the nftables drops are the kernel's own randomness)."""
        for name in hosts:
            if not re.fullmatch(r"[a-z][a-z0-9]{0,15}", name):
                raise ValueError(f"host names are short lowercase words, got {name!r}")
        self._rng = random.Random(seed)
        self.tag = f"{os.getpid()}x{random.SystemRandom().randrange(1 << 24):06x}"  # unique even with a seed
        self.subnet = subnet
        self.hosts = {name: Host(name, f"{PREFIX}{self.tag}-{name}", DEVICE, f"{subnet}.{index}")
                      for index, name in enumerate(hosts, 1)}
        self._next_address = 100
        self._firewalls = {name: Firewall(host.namespace) for name, host in self.hosts.items()}
        self._loss = {name: DropRules() for name in self.hosts}
        self._cut: set[str] = set()
        self._relay: RelayProcess | None = None
        self._processes: list[NetProcess | subprocess.Popen[Any]] = []
        self._timers: list[threading.Timer] = []
        self._mutex = threading.RLock()
        self._lock_fd: int | None = None
        self._created: list[str] = []

    # --- hosts -----------------------------------------------------------------------------------

    @property
    def client(self) -> Host:
        return self.host("client")

    @property
    def server(self) -> Host:
        return self.host("server")

    def host(self, ref: HostRef) -> Host:
        name = ref.name if isinstance(ref, Host) else ref
        try:
            return self.hosts[name]
        except KeyError:
            raise KeyError(f"this bed has hosts {sorted(self.hosts)}, not {name!r}") from None

    def _names(self, at: HostRef | Iterable[HostRef] | None) -> list[str]:
        if at is None:
            return list(self.hosts)
        if isinstance(at, (Host, str)):
            return [self.host(at).name]
        return [self.host(ref).name for ref in at]

    # --- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> NetBed:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        require()
        cleanup_leftovers()
        self._lock_fd = hold_lock(self.tag)
        try:
            for host in self.hosts.values():
                sh("ip", "netns", "add", host.namespace)
                self._created.append(host.namespace)
                host.call(_disable_ipv6)  # IPv4 only: no link-local v6 chatter, no v6 ICE candidates
            self._relay = RelayProcess(
                {name: {"namespace": host.namespace, "device": host.device, "addresses": host.addresses}
                 for name, host in self.hosts.items()}, seed=self._rng.randrange(1 << 30))
            for host in self.hosts.values():
                sh("ip", "-n", host.namespace, "-batch", "-", input="\n".join([
                    "link set lo up",
                    f"addr add {host.address}/32 dev {host.device}",
                    f"link set {host.device} up",
                    f"route add {self.subnet}.0/24 dev {host.device} src {host.address}"]) + "\n")
                self._firewalls[host.name].install()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop every process, remove the namespaces, stop the relay. Idempotent."""
        with self._mutex:
            for timer in self._timers:
                timer.cancel()
            self._timers.clear()
        for process in self._processes:
            if isinstance(process, NetProcess):
                process.stop()
            elif process.poll() is None:
                process.terminate()
                try:
                    process.wait(5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self._processes.clear()
        for namespace in self._created:
            delete_namespace(namespace)  # also what the processes above started themselves
        self._created.clear()
        if self._relay is not None:
            self._relay.stop()
            self._relay = None
        if self._lock_fd is not None:
            release_lock(self.tag, self._lock_fd)
            self._lock_fd = None

    # --- loss and cuts (nftables, on arrival) ----------------------------------------------------

    def set_loss(self, percent: float, at: HostRef | Iterable[HostRef] | None = None, *, tcp: bool = False,
                 burst: float | None = None) -> None:
        """Drop ``percent`` % of the UDP (with ``tcp``: all) packets arriving at ``at`` (default: every host).

        Independent drops (nftables) by default; with ``burst``, in runs of ``burst`` packets on
        average (Gilbert–Elliott in the relay, per direction into ``at``). Loss at the server is
        the client→server direction. A cut in progress stays until :meth:`restore`.
        """
        relay = self._relay_process()
        with self._mutex:
            for name in self._names(at):
                self._loss[name] = DropRules(percent if burst is None else 0.0, tcp=tcp)
                relay.set_burst_loss(BurstLoss(percent if burst is not None else 0.0, burst or 1.0, tcp), dst=name)
                if name not in self._cut:
                    self._firewalls[name].apply(self._loss[name])

    def cut(self, seconds: float | None = None, at: HostRef | Iterable[HostRef] | None = None, *,
            wait: bool = True) -> None:
        """Drop everything (TCP and ICMP too) arriving at ``at`` (default: every host).

        With ``seconds``, restore afterwards: blocking, or with ``wait=False`` from a timer thread
        while the caller goes on (async tests: :meth:`outage`).
        """
        names = self._names(at)
        with self._mutex:
            for name in names:
                self._cut.add(name)
                self._firewalls[name].apply(DropRules(cut=True))
        if seconds is None:
            return
        if wait:
            time.sleep(seconds)
            self.restore(names)
            return
        timer = threading.Timer(seconds, self.restore, args=(names,))
        timer.daemon = True
        with self._mutex:
            self._timers.append(timer)
        timer.start()

    def restore(self, at: HostRef | Iterable[HostRef] | None = None) -> None:
        """End a cut: the hosts get their loss setting back."""
        with self._mutex:
            for name in self._names(at):
                if name in self._cut and name in self._created_hosts():
                    self._firewalls[name].apply(self._loss[name])
                self._cut.discard(name)

    def _created_hosts(self) -> set[str]:
        return {name for name, host in self.hosts.items() if host.namespace in self._created}

    async def outage(self, seconds: float, at: HostRef | Iterable[HostRef] | None = None) -> None:
        """Cut for ``seconds`` without blocking the event loop; restored even if cancelled."""
        self.cut(at=at)
        try:
            await asyncio.sleep(seconds)
        finally:
            self.restore(at)

    def counters(self, at: HostRef) -> Counters:
        """Packets that reached ``at`` from outside, and how many the bed dropped, since the last change."""
        return self._firewalls[self.host(at).name].counters()

    # --- delay, jitter, reordering (the relay) ---------------------------------------------------

    def set_delay(self, delay_ms: float, jitter_ms: float = 0.0, reorder: bool = True, *,
                  src: HostRef | None = None, dst: HostRef | None = None) -> None:
        """One-way ``delay ± jitter`` (uniform) for packets from ``src`` to ``dst`` (default: all directions).

        ``reorder=False`` keeps each direction in order: jitter then lengthens the queue instead.
        Takes effect for the next packet; packets already in flight keep their times.
        """
        self.set_link(LinkSettings(delay_ms, jitter_ms, reorder), src=src, dst=dst)

    def set_link(self, settings: LinkSettings, *, src: HostRef | None = None, dst: HostRef | None = None) -> None:
        self._relay_process().set_link(settings, None if src is None else self.host(src).name,
                                       None if dst is None else self.host(dst).name)

    def pids(self) -> list[int]:
        """Every process the bed owns now: the relay and whatever runs inside its hosts."""
        owned = [self._relay.pid] if self._relay is not None and self._relay.running() else []
        for namespace in self._created:
            owned += namespace_pids(namespace)
        return owned

    def relay_stats(self) -> dict[str, Any]:
        """Per direction ``"client>server"``: packets passed, queued, peak queue and settings."""
        return self._relay_process().stats()

    def _relay_process(self) -> RelayProcess:
        if self._relay is None:
            raise RuntimeError("the bed is not open")
        return self._relay

    # --- addresses -------------------------------------------------------------------------------

    def _fresh_address(self) -> str:
        self._next_address += 1
        if self._next_address > 254:
            raise RuntimeError(f"the bed's subnet {self.subnet}.0/24 has no free address left")
        return f"{self.subnet}.{self._next_address - 1}"

    def add_address(self, ref: HostRef, address: str | None = None) -> str:
        """Give the host one more address (in the bed's /24, reachable from every host); returns it.

        The host keeps sending from :attr:`Host.address`; programs may bind the new one explicitly.
        """
        host = self.host(ref)
        address = address or self._fresh_address()
        sh("ip", "-n", host.namespace, "addr", "add", f"{address}/32", "dev", host.device)
        self._relay_process().route(address, host.name)
        host.addresses.append(address)
        return address

    def remove_address(self, ref: HostRef, address: str) -> None:
        """Take an address away: sockets bound to it go quiet; packets sent to it are lost."""
        host = self.host(ref)
        if address not in host.addresses or len(host.addresses) == 1:
            raise ValueError(f"{host.name} holds {host.addresses}; cannot remove {address}")
        if address == host.address:
            self._send_from(host, next(a for a in host.addresses if a != address))
        self._relay_process().unroute(address)
        sh("ip", "-n", host.namespace, "addr", "del", f"{address}/32", "dev", host.device)
        host.addresses.remove(address)

    def _send_from(self, host: Host, address: str) -> None:
        sh("ip", "-n", host.namespace, "route", "replace", f"{self.subnet}.0/24", "dev", host.device, "src", address)
        host.address = address

    def move(self, ref: HostRef, new_address: str | None = None) -> str:
        """Switch the host to a new address, as a phone moving from Wi-Fi to 4G; returns it.

        Its new packets leave from the new address; the old one is gone, so whatever still uses
        it (an ICE pair, a TCP connection) breaks the way it would on a real network change.
        """
        host = self.host(ref)
        old = list(host.addresses)
        address = self.add_address(host, new_address)
        self._send_from(host, address)
        for previous in old:
            self.remove_address(host, previous)
        return address

    # --- processes -------------------------------------------------------------------------------

    def start(self, ref: HostRef, argv: Sequence[str], *, name: str | None = None,
              env: Mapping[str, str] | None = None, cwd: Path | None = None, stdin: bool = False) -> NetProcess:
        """Start ``argv`` inside the host; its output is collected; the bed stops it on close."""
        host = self.host(ref)
        environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        process = NetProcess(host.exec_argv(list(argv)), name=name or f"{host.name}:{Path(argv[0]).name}",
                             cwd=cwd or ROOT, env=environment, stdin=stdin)
        self._processes.append(process)
        return process

    def python(self, ref: HostRef, module: str, *args: str, **kwargs: Any) -> NetProcess:
        """``python -m module args…`` with this interpreter (the project's venv) inside the host."""
        kwargs.setdefault("name", f"{self.host(ref).name}:{module}")
        return self.start(ref, [sys.executable, "-m", module, *args], **kwargs)

    def run(self, ref: HostRef, argv: Sequence[str], *, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a short command inside the host and return its output."""
        return sh(*self.host(ref).exec_argv(list(argv)), check=check, timeout=timeout)

    def spawn(self, ref: HostRef, argv: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """A raw ``Popen`` inside the host, for callers that manage pipes themselves (stopped on close)."""
        kwargs.setdefault("cwd", ROOT)
        kwargs.setdefault("text", True)
        process: subprocess.Popen[Any] = subprocess.Popen(self.host(ref).exec_argv(argv), **kwargs)
        self._processes.append(process)
        return process


def _disable_ipv6() -> None:
    for scope in ("all", "default"):
        path = Path(f"/proc/sys/net/ipv6/conf/{scope}/disable_ipv6")
        if path.exists():
            path.write_text("1")
