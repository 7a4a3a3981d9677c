"""A short soak: many short calls ended every way a call ends leave nothing behind."""

from __future__ import annotations

import asyncio
import os
import threading

from tests.conftest import GatewayFactory, RunningGateway
from tests.fake_upstream import FakeRealtimeServer
from tests.peers import ClientPeer
from tests.server.test_call import connected
from tests.server.test_call_lifecycle import until


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def call_threads() -> list[str]:
    """Threads a call could leak (aiortc's decoder threads…); the loop's bounded default executor
    pool (``asyncio_N`` or, on uvloop, ``uvloop_N``: aiortc's encoder in the test's client peers)
    is not one of them."""
    return [t.name for t in threading.enumerate() if not t.name.startswith(("asyncio_", "uvloop_"))]


async def vanish(peer: ClientPeer) -> None:
    """The browser disappears without a word (tab killed, network gone): no DTLS close, no BYE."""
    peer.mic.stop()
    transport = peer.pc.getTransceivers()[0].sender.transport.transport
    await transport._connection.close()


async def one_call(gateway: RunningGateway, how: str) -> None:
    peer = await connected(gateway)
    if how == "delete":
        assert await peer.hang_up() == 204
        await peer.close()
    elif how == "close":
        await peer.close()
    else:
        await vanish(peer)
        await asyncio.sleep(4)  # > PEER_TIMEOUT: the gateway notices on its own
        await peer.pc.close()


async def test_forty_calls_leave_no_tasks_threads_or_sockets(make_gateway: GatewayFactory,
                                                             fake_upstream: FakeRealtimeServer) -> None:
    gateway = await make_gateway(resume_grace_s=0)  # a vanished browser ends its call at once
    await one_call(gateway, "delete")  # warm-up: first-call allocations are not leaks
    await until(lambda: len(gateway.state.calls) == 0)
    tasks, threads, fds = len(asyncio.all_tasks()), call_threads(), open_fds()
    ways = ["delete", "close"] * 17 + ["vanish"] * 6
    for batch in range(0, len(ways), 10):
        await asyncio.gather(*(one_call(gateway, how) for how in ways[batch:batch + 10]))
    await until(lambda: len(gateway.state.calls) == 0 and fake_upstream.open_connections == 0, timeout=20)
    await asyncio.sleep(0.5)
    reasons = [summary.reason for _, summary in gateway.state.calls.recent]
    assert reasons.count("peer_gone") == 6, reasons
    assert len(asyncio.all_tasks()) <= tasks
    assert call_threads() == threads
    assert open_fds() <= fds + 2
