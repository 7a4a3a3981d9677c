"""A user-space link between two network namespaces with delay, jitter and optional reordering.

This kernel has no ``tc netem``. The relay opens a TUN device inside each namespace (it enters
each with setns(2) just long enough to create the device), then copies IP packets from one to
the other, each after ``delay ± jitter``. Settings change at run time through a small control
file (JSON, re-read when it changes). Run as ``python -m tests.netbed.relay CONFIG.json``.
"""

from __future__ import annotations

import ctypes
import fcntl
import heapq
import json
import os
import random
import selectors
import signal
import struct
import sys
import time
from pathlib import Path

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def enter_namespace(name: str) -> None:
    with open(f"/var/run/netns/{name}") as handle:
        if _libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns({name}) failed")


def open_tun(namespace: str, device: str) -> int:
    """Create TUN ``device`` inside ``namespace``; the descriptor works from any namespace."""
    with open("/proc/self/ns/net") as home:
        enter_namespace(namespace)
        try:
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", device.encode(), IFF_TUN | IFF_NO_PI))
        finally:
            if _libc.setns(home.fileno(), CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "could not return to the original namespace")
    return fd


class Link:
    """Delay settings for one direction, reloaded from the control file."""

    def __init__(self) -> None:
        self.delay = 0.0
        self.jitter = 0.0
        self.reorder = True
        self.last_release = 0.0

    def release_time(self, now: float, rng: random.Random) -> float:
        when = now + self.delay + (rng.uniform(-self.jitter, self.jitter) if self.jitter else 0.0)
        if not self.reorder:
            when = max(when, self.last_release)  # FIFO: jitter stretches the queue instead
        self.last_release = max(self.last_release, when)
        return max(when, now)


def main(config_path: str) -> None:
    config_file = Path(config_path)
    config = json.loads(config_file.read_text())
    fd_a = open_tun(config["namespace_a"], config["device_a"])
    fd_b = open_tun(config["namespace_b"], config["device_b"])
    links = {fd_a: Link(), fd_b: Link()}  # keyed by the descriptor packets are read from
    target = {fd_a: fd_b, fd_b: fd_a}
    rng = random.Random(config.get("seed", 0))
    mtime = 0.0

    def reload() -> None:
        nonlocal mtime
        stamp = config_file.stat().st_mtime
        if stamp == mtime:
            return
        mtime = stamp
        settings = json.loads(config_file.read_text())
        for link in links.values():
            link.delay = settings.get("delay_ms", 0) / 1000
            link.jitter = settings.get("jitter_ms", 0) / 1000
            link.reorder = settings.get("reorder", True)

    reload()
    selector = selectors.DefaultSelector()
    selector.register(fd_a, selectors.EVENT_READ)
    selector.register(fd_b, selectors.EVENT_READ)
    queue: list[tuple[float, int, int, bytes]] = []
    counter = 0
    running = True

    def stop(*_: object) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("ready", flush=True)
    last_reload = time.monotonic()
    while running:
        now = time.monotonic()
        timeout = max(0.0, queue[0][0] - now) if queue else 0.2
        for key, _ in selector.select(min(timeout, 0.2)):
            while True:
                try:
                    packet = os.read(key.fd, 65535)
                except BlockingIOError:
                    break
                counter += 1
                heapq.heappush(queue, (links[key.fd].release_time(time.monotonic(), rng), counter,
                                       target[key.fd], packet))
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, fd, packet = heapq.heappop(queue)
            try:
                os.write(fd, packet)
            except OSError:
                pass  # the far side went down: the packet is lost, like on a real link
        if now - last_reload > 0.2:
            reload()
            last_reload = now


if __name__ == "__main__":
    main(sys.argv[1])
