"""The bed measured from outside: loss, delay, jitter, reordering, cuts, moves and processes."""

from __future__ import annotations

import math
import socket
import sys
import time

import numpy as np
import pytest

from .bed import NetBed
from .probe import measure_udp, tcp_connects
from .process import ProcessError
from .system import require

pytestmark = pytest.mark.netns


def close_to(observed: float, p: float, n: int, z: float = 4.5) -> bool:
    """Binomial bound: a correct bed fails this about once in 150,000 runs."""
    return abs(observed - p) <= z * math.sqrt(p * (1 - p) / n)


def test_udp_loss_matches_the_setting_in_the_direction_asked(netbed: NetBed) -> None:
    assert measure_udp(netbed.client, netbed.server, count=500, interval=0.0005).loss == 0
    for percent in (5, 10, 20):
        netbed.set_loss(percent, at=netbed.server)  # arrivals at the server: client → server only
        uplink = measure_udp(netbed.client, netbed.server, count=3000, interval=0.0005)
        assert close_to(uplink.loss, percent / 100, 3000), f"{percent}% asked, {100 * uplink.loss:.1f}% lost"
        counted = netbed.counters(netbed.server)
        assert (counted.arrived, counted.dropped) == (3000, 3000 - uplink.received)
    assert measure_udp(netbed.server, netbed.client, count=500, interval=0.0005).loss == 0
    netbed.set_loss(100, at=netbed.server)
    assert tcp_connects(netbed.client, netbed.server)  # UDP-only loss leaves signaling alone
    netbed.set_loss(100, at=netbed.server, tcp=True)
    assert not tcp_connects(netbed.client, netbed.server, timeout=0.3)


def test_delay_and_jitter_follow_the_settings_per_direction(netbed: NetBed) -> None:
    netbed.set_delay(50, jitter_ms=20, src=netbed.client, dst=netbed.server)
    netbed.set_delay(10, src=netbed.server, dst=netbed.client)
    up = np.array(measure_udp(netbed.client, netbed.server, count=600, interval=0.005).delays_ms)
    down = np.array(measure_udp(netbed.server, netbed.client, count=200, interval=0.005).delays_ms)
    assert len(up) == 600 and len(down) == 200
    assert 48 <= np.median(up) <= 53
    q1, q3 = np.percentile(up, [25, 75])
    assert 36 <= q1 <= 44 and 56 <= q3 <= 64  # uniform over 30..70 ms: quartiles at 40 and 60
    # Never early; late only by the relay's wake-up (≤ 1 ms, more if the machine is overloaded).
    assert up.min() >= 29.5 and np.percentile(up, 95) <= 70.5
    assert 9.5 <= up.std() <= 13.5  # uniform ±20 ms: σ = 11.5 ms
    assert down.min() >= 9.9 and np.median(down) <= 11 and np.percentile(down, 90) <= 12

    netbed.set_delay(100)  # at run time, both directions
    later = np.array(measure_udp(netbed.client, netbed.server, count=100, interval=0.005).delays_ms)
    assert 99.5 <= np.median(later) <= 103


def test_jitter_reorders_packets_only_when_allowed(netbed: NetBed) -> None:
    netbed.set_delay(30, jitter_ms=20, reorder=True)
    shuffled = measure_udp(netbed.client, netbed.server, count=400, interval=0.002)
    assert shuffled.received == 400 and shuffled.reordered > 40
    netbed.set_delay(30, jitter_ms=20, reorder=False)
    ordered = measure_udp(netbed.client, netbed.server, count=400, interval=0.002)
    assert ordered.received == 400 and ordered.reordered == 0
    assert np.std(ordered.delays_ms) > 1  # still jittered


def test_a_cut_stops_everything_and_restore_brings_back_the_loss_setting(netbed: NetBed) -> None:
    netbed.set_loss(10, at=netbed.server)
    netbed.cut()
    assert measure_udp(netbed.client, netbed.server, count=100, settle=0.2).received == 0
    assert measure_udp(netbed.server, netbed.client, count=100, settle=0.2).received == 0
    assert not tcp_connects(netbed.client, netbed.server, timeout=0.5)
    netbed.restore()
    after = measure_udp(netbed.client, netbed.server, count=1500, interval=0.0005)
    assert close_to(after.loss, 0.10, 1500)
    assert tcp_connects(netbed.client, netbed.server)


def test_a_timed_cut_drops_exactly_its_window(netbed: NetBed) -> None:
    netbed.cut(1.0, wait=False)  # restored by the bed's timer while the stream goes on
    stream = measure_udp(netbed.client, netbed.server, count=400, interval=0.005)
    lost = sorted(set(range(400)) - set(stream.order))
    assert lost == list(range(len(lost)))  # one gap, from the start of the stream
    assert 180 <= len(lost) <= 215  # ≈ 1 s of packets sent every 5 ms


def test_moving_a_host_changes_where_its_packets_come_from(netbed: NetBed) -> None:
    server = netbed.server.socket()
    client = netbed.client.socket()
    with server, client:
        server.bind((netbed.server.address, 0))
        server.settimeout(1)
        client.settimeout(0.3)
        client.sendto(b"on wifi", server.getsockname())
        _, source = server.recvfrom(100)
        assert source[0] == "10.77.0.1"

        new = netbed.move(netbed.client)
        assert netbed.client.addresses == [new] and new != "10.77.0.1"
        client.sendto(b"on 4g", server.getsockname())
        data, moved = server.recvfrom(100)
        assert (data, moved) == (b"on 4g", (new, source[1]))
        server.sendto(b"to the old address", source)
        with pytest.raises(TimeoutError):
            client.recvfrom(100)
        server.sendto(b"to the new one", moved)
        assert client.recvfrom(100)[0] == b"to the new one"
    assert netbed.relay_stats()["unroutable"] >= 1

    second = netbed.add_address(netbed.server)
    assert netbed.server.addresses == ["10.77.0.2", second] and netbed.server.address == "10.77.0.2"
    assert tcp_connects(netbed.client, netbed.server) and tcp_connects(netbed.client, netbed.server, address=second)
    netbed.remove_address(netbed.server, "10.77.0.2")
    assert netbed.server.address == second and not tcp_connects(netbed.client, netbed.server, 0.3, address="10.77.0.2")


def test_processes_run_inside_their_host_and_report_back(netbed: NetBed) -> None:
    assert "10.77.0.1/32" in netbed.run(netbed.client, ["ip", "-o", "-4", "addr"]).stdout
    assert "10.77.0.2" not in netbed.run(netbed.client, ["ip", "-o", "-4", "addr"]).stdout
    netbed.set_delay(20)
    web = netbed.python(netbed.server, "http.server", "--bind", netbed.server.address, "8080")
    web.wait_for_line("Serving HTTP")
    fetch = ("import time, urllib.request; t = time.monotonic(); "
             f"status = urllib.request.urlopen('http://{netbed.server.address}:8080/').status; "
             "print(status, time.monotonic() - t)")
    status, seconds = netbed.run(netbed.client, [sys.executable, "-c", fetch]).stdout.split()
    assert status == "200"
    assert float(seconds) >= 0.08  # handshake + request: two round trips of 2 × 20 ms
    web.wait_for_line(r'"GET / HTTP/1.1" 200', stream="stderr")
    web.stop()
    assert web.returncode is not None

    broken = netbed.python(netbed.client, "tests.netbed.no_such_module")
    with pytest.raises(ProcessError, match="No module named"):
        broken.wait_for_line("never printed")


def test_three_hosts_each_with_their_own_paths() -> None:
    require()
    with NetBed(("client", "server", "turn")) as bed:
        bed.set_delay(20, src="client", dst="turn")
        bed.set_loss(100, at="server")
        to_turn = measure_udp(bed.client, bed.host("turn"), count=100, interval=0.002)
        assert to_turn.loss == 0 and 19.5 <= np.median(to_turn.delays_ms) <= 22
        assert measure_udp(bed.host("turn"), bed.client, count=100, interval=0.002).delays_ms[0] < 5
        assert measure_udp(bed.host("turn"), bed.server, count=50, settle=0.1).received == 0


def test_a_host_runs_an_event_loop_in_process(netbed: NetBed) -> None:
    import asyncio

    async def echo_once() -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # created in this thread: the client's
        sock.bind(("0.0.0.0", 0))
        sock.setblocking(False)
        with sock:
            await loop.sock_sendto(sock, b"hello", (netbed.server.address, 9))
            host, port = sock.getsockname()
            return str(host), int(port)

    server = netbed.server.socket()
    with server:
        server.bind((netbed.server.address, 9))
        server.settimeout(1)
        started = time.monotonic()
        local = asyncio.run(netbed.client.run_async(echo_once))
        _, source = server.recvfrom(100)
    assert source == (netbed.client.address, local[1])
    assert time.monotonic() - started < 1
