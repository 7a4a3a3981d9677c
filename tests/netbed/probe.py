"""Measuring the bed from the test process: a paced UDP stream between two hosts, and a TCP check.

The sockets are made inside the hosts' namespaces (see :meth:`Host.socket`) but driven from the
test's own thread, so measuring costs no subprocess. One-way delay is exact: the sender stamps
each datagram with the wall clock and the kernel stamps its arrival (SO_TIMESTAMPNS) on the same
clock, so a late read by this thread does not inflate the figure.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass

from .host import Host

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; Python does not export it
HEADER = struct.Struct("!Iq")


@dataclass(frozen=True)
class ProbeResult:
    sent: int
    order: list[int]
    """Sequence numbers in arrival order."""
    delays_ms: list[float]
    """One-way delay of each arrival, in arrival order."""

    @property
    def received(self) -> int:
        return len(set(self.order))

    @property
    def loss(self) -> float:
        """Fraction of the stream that never arrived."""
        return 1 - self.received / self.sent

    @property
    def reordered(self) -> int:
        """Arrivals that came after a later-sent packet."""
        count, highest = 0, -1
        for seq in self.order:
            if seq < highest:
                count += 1
            highest = max(highest, seq)
        return count


def measure_udp(sender: Host, receiver: Host, *, count: int = 1000, interval: float = 0.002,
                settle: float = 0.3, size: int = 160) -> ProbeResult:
    """Send ``count`` datagrams of ``size`` bytes every ``interval`` s from ``sender`` to ``receiver``;
    wait ``settle`` s after the last for stragglers (make it longer than the delay plus jitter)."""
    rx = receiver.socket()
    tx = sender.socket()
    with rx, tx:
        rx.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        rx.bind((receiver.address, 0))
        rx.setblocking(False)
        tx.connect(rx.getsockname())
        padding = bytes(max(0, size - HEADER.size))
        order: list[int] = []
        delays: list[float] = []
        start = time.monotonic()
        for seq in range(count):
            tx.send(HEADER.pack(seq, time.time_ns()) + padding)
            _drain(rx, order, delays)
            pause = start + (seq + 1) * interval - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline and len(order) < count:
            _drain(rx, order, delays)
            time.sleep(0.002)
        _drain(rx, order, delays)
    return ProbeResult(count, order, delays)


def _drain(sock: socket.socket, order: list[int], delays: list[float]) -> None:
    while True:
        try:
            data, ancillary, _, _ = sock.recvmsg(2048, 64)
        except BlockingIOError:
            return
        seq, sent_ns = HEADER.unpack_from(data)
        arrived_ns = time.time_ns()
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                seconds, nanoseconds = struct.unpack("qq", payload[:16])
                arrived_ns = seconds * 1_000_000_000 + nanoseconds
        order.append(seq)
        delays.append((arrived_ns - sent_ns) / 1e6)


def tcp_connects(client: Host, server: Host, timeout: float = 1.0, *, address: str | None = None) -> bool:
    """Whether a TCP connection from ``client`` to ``server`` (at ``address``, default its
    :attr:`~Host.address`) completes within ``timeout`` s."""
    listener = server.socket(kind=socket.SOCK_STREAM)
    connector = client.socket(kind=socket.SOCK_STREAM)
    with listener, connector:
        listener.bind(("0.0.0.0", 0))
        listener.listen()
        connector.settimeout(timeout)
        try:
            connector.connect((address or server.address, listener.getsockname()[1]))
        except OSError:
            return False
        return True
