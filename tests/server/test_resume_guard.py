"""A resume token brings back only a call whose browser vanished: never a live call, never an
ended one, and a resume that loses a race leaves no peer connection behind."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from aiortc import RTCPeerConnection

from gateway.webrtc.browser_peer import BrowserPeer
from tests.conftest import GatewayFactory, RunningGateway
from tests.peers import ClientPeer
from tests.server.test_call import connected, speak
from tests.server.test_call_lifecycle import until
from tests.server.test_soak import vanish


async def resume_request(url: str, token: str) -> tuple[ClientPeer, int, dict[str, Any] | None]:
    """A new connection offering ``token``: (its peer, status, JSON error if refused)."""
    peer = ClientPeer(url)
    await peer.pc.setLocalDescription(await peer.pc.createOffer())
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/v1/realtime/calls", data=peer.pc.localDescription.sdp,
                             headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"}) as r:
            error = (await r.json())["error"] if r.status >= 400 else None
            return peer, r.status, error


class SlowAnswers:
    """Holds every new gateway peer's answer until :meth:`release` (a slow ICE gathering), and
    remembers the peer connections made meanwhile."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.entered = asyncio.Event()
        self._released = asyncio.Event()
        self.made: list[RTCPeerConnection] = []
        original = BrowserPeer.accept

        async def accept(peer: BrowserPeer, offer_sdp: str) -> str:
            self.made.append(peer.pc)
            answer = await original(peer, offer_sdp)
            self.entered.set()
            await self._released.wait()
            return answer

        monkeypatch.setattr(BrowserPeer, "accept", accept)

    def release(self) -> None:
        self._released.set()

    def open_ones(self) -> Iterator[RTCPeerConnection]:
        return (pc for pc in self.made if pc.connectionState != "closed")


async def suspended_call(gateway: RunningGateway) -> tuple[ClientPeer, Any]:
    peer = await connected(gateway)
    await vanish(peer)
    (call,) = gateway.state.calls
    await until(lambda: call._state.suspended, timeout=6)  # noticed within PEER_TIMEOUT
    return peer, call


async def test_a_leaked_token_cannot_take_over_a_live_call(gateway: RunningGateway) -> None:
    victim = await connected(gateway)
    thief, status, error = await resume_request(gateway.url, victim.resume_token or "")
    try:
        assert status == 409 and error is not None and error["code"] == "call_not_suspended", error
        assert "still connected" in error["message"]
        mark = len(victim.events)
        await speak(victim)  # the victim's call is untouched
        await victim.wait_for("output_audio_buffer.stopped", after=mark, timeout=15)
        (call,) = gateway.state.calls
        assert call.resumes == 0
        await vanish(victim)  # once its browser is gone, the same token brings the call back
        await until(lambda: call._state.suspended, timeout=6)
        back = ClientPeer(gateway.url)
        assert await back.resume(victim.resume_token or "") == 201
        await back.channel_open()
        await back.close()
    finally:
        await victim.pc.close()
        await thief.pc.close()


async def test_a_resume_racing_a_hang_up_answers_404_and_closes_its_connection(
        gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch) -> None:
    lost, call = await suspended_call(gateway)
    slow = SlowAnswers(monkeypatch)
    resuming = asyncio.ensure_future(resume_request(gateway.url, lost.resume_token or ""))
    try:
        await asyncio.wait_for(slow.entered.wait(), 10)  # the resume is answering its offer…
        async with aiohttp.ClientSession() as http:  # …when the hang-up arrives
            async with http.delete(f"{gateway.url}{lost.location}") as r:
                assert r.status == 204
        await until(lambda: len(gateway.state.calls) == 0)
        slow.release()
        peer, status, error = await resuming
        await peer.pc.close()
        assert status == 404 and error is not None and error["code"] == "call_not_found", (status, error)
        await until(lambda: not list(slow.open_ones()), timeout=5)
        assert [summary.reason for _, summary in gateway.state.calls.recent] == ["client_hangup"]
    finally:
        slow.release()
        await lost.pc.close()


async def test_a_resume_racing_the_grace_period_answers_404(make_gateway: GatewayFactory,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    gateway = await make_gateway(resume_grace_s=1.0)
    lost, call = await suspended_call(gateway)
    slow = SlowAnswers(monkeypatch)
    resuming = asyncio.ensure_future(resume_request(gateway.url, lost.resume_token or ""))
    try:
        await asyncio.wait_for(slow.entered.wait(), 10)
        await until(lambda: call.ended, timeout=5)  # the grace ran out meanwhile
        slow.release()
        peer, status, error = await resuming
        await peer.pc.close()
        assert status == 404 and error is not None and error["code"] == "call_not_found", (status, error)
        await until(lambda: not list(slow.open_ones()), timeout=5)
    finally:
        slow.release()
        await lost.pc.close()


async def test_two_resumes_at_once_one_wins(gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch) -> None:
    lost, call = await suspended_call(gateway)
    slow = SlowAnswers(monkeypatch)
    first = asyncio.ensure_future(resume_request(gateway.url, lost.resume_token or ""))
    try:
        await asyncio.wait_for(slow.entered.wait(), 10)
        second_peer, status, error = await resume_request(gateway.url, lost.resume_token or "")
        await second_peer.pc.close()
        assert status == 409 and error is not None and error["code"] == "resume_in_progress", error
        slow.release()
        winner, status, _ = await first
        assert status == 201
        await winner.pc.close()
        assert len(slow.made) == 1  # the refused one never got a peer connection
    finally:
        slow.release()
        await lost.pc.close()
