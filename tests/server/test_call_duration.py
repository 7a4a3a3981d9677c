"""MAX_CALL_DURATION: a call ends on time, and the browser is told why before the hang-up."""

from __future__ import annotations

import asyncio
import time

from tests.conftest import GatewayFactory
from tests.fake_upstream import FakeRealtimeServer
from tests.server.test_call import connected
from tests.server.test_call_lifecycle import until


async def test_a_call_ends_at_max_call_duration_saying_why(make_gateway: GatewayFactory,
                                                           fake_upstream: FakeRealtimeServer) -> None:
    gateway = await make_gateway(max_call_duration_s=3.0)
    started = time.monotonic()
    peer = await connected(gateway)
    other = None
    try:
        error = await peer.wait_for("error", timeout=10)
        ended_at = time.monotonic() - started
        assert error["error"]["code"] == "call_duration_exceeded"
        assert "3 s" in error["error"]["message"]
        assert 2.5 <= ended_at <= 5.0, ended_at
        await until(lambda: peer.pc.connectionState == "closed" or peer.channel.readyState == "closed", timeout=5)
        await until(lambda: len(gateway.state.calls) == 0 and fake_upstream.open_connections == 0)
        assert [summary.reason for _, summary in gateway.state.calls.recent] == ["call_duration_exceeded"]
        other = await connected(gateway)  # the slot is free again
    finally:
        await peer.close()
        if other is not None:
            await other.close()


async def test_zero_means_no_limit(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(max_call_duration_s=0)
    peer = await connected(gateway)
    try:
        (call,) = gateway.state.calls
        assert not any(task.get_name().endswith("-max-duration") for task in asyncio.all_tasks())
        assert not call.ended
    finally:
        await peer.close()
