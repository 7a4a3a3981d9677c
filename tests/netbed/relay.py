"""The bed's "internet": a user-space router between TUN devices, one per namespace, with delay,
jitter, optional reordering and optional bursty loss per direction (this kernel has no ``tc netem``).

Run by :class:`tests.netbed.relay_process.RelayProcess` as
``python -m tests.netbed.relay CONFIG_JSON`` where the config names each port
(``{"ports": {"client": {"namespace": …, "device": …, "addresses": […]}, …}, "seed": N}``).
The relay enters each namespace just long enough to create its TUN device (the descriptor keeps
working from anywhere), prints ``{"ready": true}``, then forwards IPv4 packets to the port that owns
the destination address, each through the :class:`~tests.netbed.link.DelayLine` of its
(source port, destination port) pair. Control requests arrive as JSON lines on stdin, one JSON reply
line each on stdout; stdin closing (the owner died) ends the relay, so a crashed test leaves no relay.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import selectors
import signal
import socket
import struct
import sys
import time
from typing import Any

from .link import BurstLoss, DelayLine, GilbertElliott, LinkSettings
from .system import call_in_namespace

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
CONTROL = -1


def open_tun(namespace: str, device: str) -> int:
    """Create TUN ``device`` inside ``namespace``; gone again when the descriptor closes."""

    def create() -> int:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", device.encode(), IFF_TUN | IFF_NO_PI))
        return fd

    return call_in_namespace(namespace, create)


class Router:
    """Ports, routes and delay lines; ``handle`` answers control requests."""

    def __init__(self, config: dict[str, Any]) -> None:
        rng = random.Random(config.get("seed", 0))
        self.fds: dict[str, int] = {}
        self.routes: dict[bytes, str] = {}
        for name, port in config["ports"].items():
            self.fds[name] = open_tun(port["namespace"], port["device"])
            for address in port.get("addresses", []):
                self.routes[socket.inet_aton(address)] = name
        self.port_of_fd = {fd: name for name, fd in self.fds.items()}
        self.lines: dict[tuple[str, str], DelayLine[bytes]] = {
            (src, dst): DelayLine(random.Random(rng.random())) for src in self.fds for dst in self.fds if src != dst}
        self.losses: dict[tuple[str, str], GilbertElliott] = {
            pair: GilbertElliott(random.Random(rng.random())) for pair in self.lines}
        self.unroutable = 0
        self.write_errors = 0
        self.scheduling = "normal"

    def receive(self, fd: int, now: float) -> None:
        source = self.port_of_fd[fd]
        while True:
            try:
                packet = os.read(fd, 65535)
            except BlockingIOError:
                return
            destination = self.routes.get(packet[16:20]) if packet and packet[0] >> 4 == 4 else None
            if destination is None or destination == source:
                self.unroutable += 1  # IPv6 chatter, or an address nobody holds (any more)
                continue
            loss = self.losses[(source, destination)]
            if loss.settings.percent and (loss.settings.tcp or packet[9] == 17) and loss.drops():
                continue  # lost in a burst (UDP only unless asked)
            self.lines[(source, destination)].push(now, packet)

    def release(self, now: float) -> float | None:
        """Send what is due; returns when the next packet is."""
        upcoming: float | None = None
        for (_, destination), line in self.lines.items():
            for packet in line.pop_due(now):
                try:
                    os.write(self.fds[destination], packet)
                except OSError:
                    self.write_errors += 1  # the far device is down: lost, as on a real link
            due = line.next_due()
            if due is not None and (upcoming is None or due < upcoming):
                upcoming = due
        return upcoming

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "link":
            settings = LinkSettings.from_json(request["settings"])
            for (src, dst), line in self.lines.items():
                if request.get("src") in (None, src) and request.get("dst") in (None, dst):
                    line.settings = settings
            return {"ok": True}
        if op == "loss":
            burst = BurstLoss.from_json(request["settings"])
            for (src, dst), loss in self.losses.items():
                if request.get("src") in (None, src) and request.get("dst") in (None, dst):
                    loss.settings = burst
                    loss.bad = False
            return {"ok": True}
        if op == "route":
            self.routes[socket.inet_aton(request["address"])] = request["port"]
            return {"ok": True}
        if op == "unroute":
            self.routes.pop(socket.inet_aton(request["address"]), None)
            return {"ok": True}
        if op == "stats":
            return {"ok": True, "unroutable": self.unroutable, "write_errors": self.write_errors,
                    "scheduling": self.scheduling, "links": {
                f"{src}>{dst}": {"passed": line.passed, "queued": len(line), "peak_queue": line.peak_queue,
                                 "burst_dropped": self.losses[(src, dst)].dropped,
                                 "bursts": self.losses[(src, dst)].bursts,
                                 **line.settings.to_json(), "burst_loss": self.losses[(src, dst)].settings.to_json()}
                for (src, dst), line in self.lines.items()}}
        return {"ok": False, "error": f"unknown request {request!r}"}


def prioritise() -> str:
    """Wake up on time even when the tests around us load both cores: a late relay would add jitter
    nobody asked for. Lowest real-time priority (the kernel's RT throttling still bounds it), else nice."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
        return "fifo"
    except (OSError, AttributeError):
        pass
    try:
        os.nice(-10)
        return "nice"
    except OSError:
        return "normal"


def main(config: dict[str, Any]) -> None:
    router = Router(config)
    router.scheduling = prioritise() if config.get("prioritise", True) else "normal"
    owner = os.getppid()
    selector = selectors.DefaultSelector()
    for fd in router.fds.values():
        selector.register(fd, selectors.EVENT_READ)
    os.set_blocking(sys.stdin.fileno(), False)
    selector.register(sys.stdin.fileno(), selectors.EVENT_READ, CONTROL)
    running = True

    def stop(*_: object) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    pending = b""
    print(json.dumps({"ready": True}), flush=True)
    upcoming: float | None = None
    while running and os.getppid() == owner:
        timeout = 0.5 if upcoming is None else min(0.5, max(0.0, upcoming - time.monotonic()))
        for key, _ in selector.select(timeout):
            if key.data == CONTROL:
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    return  # the owner is gone
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    reply = router.handle(json.loads(line))
                    sys.stdout.write(json.dumps(reply) + "\n")
                    sys.stdout.flush()
            else:
                router.receive(key.fd, time.monotonic())
        upcoming = router.release(time.monotonic())


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
