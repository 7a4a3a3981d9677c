"""Calls end cleanly: hang-up, vanished peers, dead or failing upstreams, and many calls at once."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from tests.conftest import GatewayFactory, RunningGateway
from tests.fake_upstream import FakeRealtimeServer
from tests.peers import ClientPeer
from tests.server.test_call import connected, speak


def call_tasks() -> list[asyncio.Task]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith(("call-", "rtc_"))]


async def until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_delete_hangs_up(gateway: RunningGateway, fake_upstream: FakeRealtimeServer) -> None:
    peer = await connected(gateway)
    try:
        assert await peer.hang_up() == 204
        await until(lambda: len(gateway.state.calls) == 0 and fake_upstream.open_connections == 0)
        await until(lambda: peer.pc.connectionState == "closed")
        assert not call_tasks()
    finally:
        await peer.close()


async def test_peer_closing_without_delete_frees_the_call(gateway: RunningGateway,
                                                          fake_upstream: FakeRealtimeServer) -> None:
    peer = await connected(gateway)
    await speak(peer)
    await peer.wait_for("output_audio_buffer.started", timeout=10)
    await peer.close()  # mid-reply, no DELETE
    await until(lambda: len(gateway.state.calls) == 0 and fake_upstream.open_connections == 0)
    assert not call_tasks()


async def test_unreachable_upstream_ends_the_call_with_a_reason(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(upstream_url="ws://127.0.0.1:9/v1/realtime", upstream_connect_timeout_s=2)
    peer = ClientPeer(gateway.url)
    try:
        await peer.connect()
        await peer.channel_open()
        error = await peer.wait_for("error", timeout=10)
        assert error["error"]["code"] == "upstream_unavailable"
        assert "Could not reach the upstream" in error["error"]["message"]
        await until(lambda: len(gateway.state.calls) == 0)
    finally:
        await peer.close()


async def test_rejected_api_key_is_fatal_and_clear(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(openai_api_key="sk-wrong")
    peer = ClientPeer(gateway.url)
    try:
        await peer.connect()
        await peer.channel_open()
        error = await peer.wait_for("error", timeout=10)
        assert error["error"]["code"] == "invalid_api_key"
        assert "sk-wrong" not in str(peer.events)
        await until(lambda: len(gateway.state.calls) == 0)
    finally:
        await peer.close()


async def test_fatal_upstream_error_ends_the_call(gateway: RunningGateway, fake_upstream: FakeRealtimeServer) -> None:
    fake_upstream.behaviour.fatal_error_after_turns = 0
    peer = await connected(gateway)
    try:
        await speak(peer)
        error = await peer.wait_for("error", timeout=10)
        assert error["error"]["code"] == "insufficient_quota"
        await until(lambda: len(gateway.state.calls) == 0)
    finally:
        await peer.close()


async def test_twenty_concurrent_calls(make_gateway: GatewayFactory, fake_upstream: FakeRealtimeServer) -> None:
    gateway = await make_gateway()
    peers = [ClientPeer(gateway.url) for _ in range(20)]
    try:
        await asyncio.gather(*(p.connect() for p in peers))
        await asyncio.gather(*(p.wait_for("session.created", timeout=20) for p in peers))
        assert len(gateway.state.calls) == 20
        for peer in peers:
            await speak(peer)
        replies = await asyncio.gather(*(p.wait_for("output_audio_buffer.stopped", timeout=30) for p in peers))
        assert len({r["response_id"] for r in replies}) == 20  # each call got its own answer
        for peer in peers:
            heard = np.concatenate([pcm for _, pcm in peer.heard])
            assert np.sqrt(np.mean(heard.astype(float) ** 2)) > 100
    finally:
        await asyncio.gather(*(p.close() for p in peers))
    await until(lambda: len(gateway.state.calls) == 0 and fake_upstream.open_connections == 0, timeout=20)
    assert not call_tasks()
