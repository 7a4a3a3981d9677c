"""Each gateway app owns its native calls' pacer and call heap (gateway/media/native/shared_media.py):
two gateways in one process pace their calls on two pacers, and the one that shuts down stops its
own — no timer of it is left on the event loop — while the other's call keeps its 50 packets a
second."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from gateway.media.native import available
from gateway.media.native.shared_media import SharedMedia
from tests.conftest import GatewayFactory
from tests.media.test_native_call_media import count_arrivals
from tests.media.test_native_pacer import paced
from tests.peers import ClientPeer

pytestmark = pytest.mark.skipif(available() is not None, reason=f"native media path: {available()}")


async def wait_until(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_each_gateway_paces_its_own_calls_and_stops_its_pacer_at_shutdown(make_gateway: GatewayFactory) -> None:
    stopping, staying = await make_gateway(media_path="native"), await make_gateway(media_path="native")
    pacers = [stopping.state.native_media.pacer, staying.state.native_media.pacer]
    assert pacers[0] is not pacers[1]
    peers = [ClientPeer(stopping.url), ClientPeer(staying.url)]
    arrivals = [count_arrivals(peer) for peer in peers]
    try:
        for peer in peers:
            await peer.connect()
            await peer.channel_open()
            await peer.wait_for("session.created")
        await wait_until(lambda: len(pacers[0]) == 1 and len(pacers[1]) == 1)  # each call on its own app's pacer
        await asyncio.sleep(0.5)
        assert pacers[0].armed and pacers[1].armed
        await stopping.stop()
        assert not stopping.state.native_media.started
        ticks = pacers[0].ticks
        window_start = time.monotonic()
        await asyncio.sleep(1.0)
        # The stopped app's pacer is gone from the loop: no stream, no timer armed, no tick since
        # (its only callbacks are ticks and wakes: a pending one would have counted).
        assert len(pacers[0]) == 0 and not pacers[0].armed and pacers[0].ticks == ticks
        assert not [t for t in arrivals[0] if t >= window_start + 0.1]  # its caller hears nothing more
        # The other app's call is unaffected: still paced, 50 packets a second.
        window = [t for t in arrivals[1] if t >= window_start]
        assert len(pacers[1]) == 1 and 45 <= len(window) <= 55 and max(np.diff(window)) < 0.1, len(window)
    finally:
        for peer in peers:
            await peer.close()
    await staying.stop()
    assert len(pacers[1]) == 0 and not pacers[1].armed


async def test_closing_the_owner_stops_its_pacer_even_with_a_stream_left() -> None:
    """A stream whose call never stopped (say, a call lingering past shutdown) does not keep the
    pacer running: the owner's cleanup drops it and cancels the timer."""
    media = SharedMedia()
    lifetime = media.context(app=None)  # as aiohttp runs a cleanup_ctx entry
    await lifetime.__anext__()
    pacer = media.pacer
    _, stream, sent = paced(pacer)
    pacer.add(stream)
    await asyncio.sleep(0.1)
    assert len(sent) >= 4 and pacer.armed
    with pytest.raises(StopAsyncIteration):
        await lifetime.__anext__()  # the app's cleanup
    count, ticks = len(sent), pacer.ticks
    await asyncio.sleep(0.1)
    assert len(sent) == count and pacer.ticks == ticks and not pacer.armed and len(pacer) == 0
    assert not media.started
    with pytest.raises(RuntimeError, match="not started"):
        media.pacer  # noqa: B018  (a call made after shutdown is refused, and stays on the Python path)
