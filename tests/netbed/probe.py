"""UDP probes run inside the bed's namespaces: ``echo PORT`` on one host, ``send HOST PORT N`` on
the other; the sender prints a JSON summary (sent, echoed, one-way delays, arrival order)."""

from __future__ import annotations

import json
import socket
import struct
import sys
import time


def echo(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("0.0.0.0", port))
        print("ready", flush=True)
        while True:
            data, addr = sock.recvfrom(2048)
            sock.sendto(data + struct.pack("!d", time.monotonic()), addr)


def send(host: str, port: int, count: int, interval: float = 0.005) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.001)
        sent_at: dict[int, float] = {}
        forward: list[float] = []
        order: list[int] = []
        for seq in range(count):
            sent_at[seq] = time.monotonic()
            sock.sendto(struct.pack("!Id", seq, sent_at[seq]), (host, port))
            deadline = time.monotonic() + interval
            while time.monotonic() < deadline:
                _drain(sock, forward, order)
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            _drain(sock, forward, order)
    print(json.dumps({"sent": count, "echoed": len(order), "forward_ms": forward, "order": order}))


def _drain(sock: socket.socket, forward: list[float], order: list[int]) -> None:
    try:
        data = sock.recv(2048)
    except (socket.timeout, BlockingIOError):
        return
    seq, sent, echoed = struct.unpack("!Idd", data)
    forward.append((echoed - sent) * 1000)  # one way: both ends read the same monotonic clock
    order.append(seq)


if __name__ == "__main__":
    if sys.argv[1] == "echo":
        echo(int(sys.argv[2]))
    else:
        send(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
