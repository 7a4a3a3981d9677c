"""The Python API, through the runnable examples: the gateway mounted in an existing aiohttp
application, and a conversation attached to a peer connection the application owns.

Real aiortc peers over loopback, the fake upstream speaking the GA protocol.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiortc import RTCPeerConnection, RTCSessionDescription

from examples import attach_to_peer_connection, mount_in_aiohttp
from gateway.api import attach
from gateway.config import Config
from gateway.server.signaling import STATE_KEY
from tests.audio_tools import pitch, rms, voiced
from tests.conftest import gateway_config
from tests.fake_upstream import FakeRealtimeServer
from tests.peers import ClientPeer, MicTrack, TrackListener
from tests.schema import server_event_problem
from tests.server.test_call import turn, voice_of

WEB_ROOT = Config().web_root


async def serve(app: web.Application) -> tuple[str, web.AppRunner]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return f"http://127.0.0.1:{runner.addresses[0][1]}", runner


# --- mount -----------------------------------------------------------------------------------


async def test_mounted_gateway_leaves_the_application_its_routes_and_middleware(
        fake_upstream: FakeRealtimeServer) -> None:
    config = gateway_config(upstream_url=fake_upstream.url, web_root=WEB_ROOT)
    app = mount_in_aiohttp.make_app(config)
    url, runner = await serve(app)
    peer = ClientPeer(f"{url}/voice")
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/") as response:  # the application's own route
                assert response.status == 200 and "The shop" in await response.text()
                assert response.headers["X-Served-By"] == "shop"
            async with http.get(f"{url}/nowhere") as response:  # and its own 404, not the gateway's JSON
                assert response.status == 404 and response.content_type == "text/plain"
            async with http.get(f"{url}/voice/") as response:  # the gateway's page, under the prefix
                assert response.status == 200 and "app.js" in await response.text()

        await peer.connect()
        await peer.channel_open()
        created = await peer.wait_for("session.created")
        assert created["session"]["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}
        spoken = await turn(peer)
        speech = voice_of(peer.heard_between(spoken))
        assert rms(speech) > 1000
        assert pitch(speech, 48000) == pytest.approx(fake_upstream.behaviour.reply_pitch_hz, rel=0.03)
        assert {"/voice/v1/realtime/client_secrets", "/voice/v1/realtime/calls"} <= set(app[mount_in_aiohttp.SEEN_KEY])

        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/voice/healthz") as response:  # the application's middleware ran
                assert response.headers["X-Served-By"] == "shop"
                assert (await response.json())["calls"] == 1
            async with http.post(f"{url}/voice/v1/realtime/client_secrets", json={},
                                 headers={"Origin": "https://elsewhere.example"}) as response:
                assert response.status == 403  # the gateway's origin check holds under the prefix
                assert (await response.json())["error"]["code"] == "origin_not_allowed"
            async with http.post(f"{url}/voice/v1/realtime/client_secrets",
                                 data=b"{" + b" " * (config.max_body_bytes + 1) + b"}",
                                 headers={"Content-Type": "application/json"}) as response:
                assert response.status == 413  # the gateway's own body limit, not the application's 1 MiB
    finally:
        await runner.cleanup()  # the application's shutdown ends the gateway's calls
        await peer.close()
    assert len(app[mount_in_aiohttp.GATEWAY_KEY][STATE_KEY].calls) == 0


# --- attach ----------------------------------------------------------------------------------


class RemotePeer:
    """The other end of the application's peer connection: speaks and listens, no data channel."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection()
        self.mic = MicTrack()
        self.pc.addTrack(self.mic)
        self.ears = TrackListener()
        self.pc.on("track", self.ears.listen)

    async def call(self, url: str) -> None:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        async with aiohttp.ClientSession() as http, http.post(url, data=self.pc.localDescription.sdp) as response:
            assert response.status == 200, await response.text()
            answer = await response.text()
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

    async def close(self) -> None:
        await self.pc.close()
        await self.ears.stop()


async def wait_until(condition: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_conversation_on_the_applications_own_peer_connection(fake_upstream: FakeRealtimeServer) -> None:
    app = attach_to_peer_connection.make_app(gateway_config(upstream_url=fake_upstream.url))
    voice = app[attach_to_peer_connection.VOICE_KEY]
    url, runner = await serve(app)
    remote = RemotePeer()
    try:
        called = time.monotonic()
        await remote.call(f"{url}/offer")

        def transcripts() -> list[dict[str, Any]]:
            return [e for e in voice.events if e["type"] == "response.output_audio_transcript.done"]

        # The application greets first (session.send): the remote hears it without saying a word.
        await wait_until(lambda: len(transcripts()) == 1 and any(
            e["type"] == "output_audio_buffer.stopped" for e in voice.events))
        greeting = voice_of(remote.ears.between(called))
        assert rms(greeting) > 1000
        assert pitch(greeting, 48000) == pytest.approx(fake_upstream.behaviour.reply_pitch_hz, rel=0.03)
        sent = fake_upstream.sessions[-1].events_of("response.create")
        assert sent[0]["response"] == attach_to_peer_connection.GREETING["response"]

        # The remote's voice reaches the model through the application's connection; the answer comes back.
        spoken = remote.mic.say(voiced(1.2, 180.0, 48000, seed=7))
        await wait_until(lambda: len(transcripts()) == 2 and sum(
            e["type"] == "output_audio_buffer.stopped" for e in voice.events) == 2)
        answer = voice_of(remote.ears.between(spoken))
        assert pitch(answer, 48000) == pytest.approx(fake_upstream.behaviour.reply_pitch_hz, rel=0.03)
        user = [e for e in voice.events if e["type"] == "conversation.item.input_audio_transcription.completed"]
        assert [e["transcript"] for e in user] == [fake_upstream.behaviour.user_transcript]
        kinds = [e["type"] for e in voice.events]
        assert kinds[0] == "session.created"
        assert kinds.index("input_audio_buffer.speech_started") < kinds.index("input_audio_buffer.speech_stopped")
        assert [problem for e in voice.events if (problem := server_event_problem(e))] == []

        # The remote hangs up: the conversation ends and the application frees its connection.
        await remote.close()
        await wait_until(lambda: voice.conversations == 0, timeout=10)
    finally:
        await remote.close()
        await runner.cleanup()


async def test_attach_needs_a_track_the_connection_receives() -> None:
    pc = RTCPeerConnection()
    try:
        with pytest.raises(ValueError, match="receives"):
            await attach(pc, MicTrack(), gateway_config())
    finally:
        await pc.close()
