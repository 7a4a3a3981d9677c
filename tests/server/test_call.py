"""A whole call through the gateway: real aiortc browser stand-in, real gateway, fake upstream."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from tests.audio_tools import active_segments, pitch, rms, voiced
from tests.conftest import RunningGateway
from tests.fake_upstream import FakeRealtimeServer
from tests.peers import ClientPeer

SPEECH_PITCH = 180.0


async def connected(gateway: RunningGateway, **kwargs) -> ClientPeer:
    peer = ClientPeer(gateway.url, **kwargs)
    await peer.connect()
    await peer.channel_open()
    await peer.wait_for("session.created")
    return peer


async def speak(peer: ClientPeer, seconds: float = 1.2) -> float:
    """Say something voice-like; returns when the last sample leaves the mic."""
    return peer.mic.say(voiced(seconds, SPEECH_PITCH, 48000, seed=7))


async def turn(peer: ClientPeer, seconds: float = 1.2, timeout: float = 15.0) -> float:
    """Say something and wait until the reply has played out; returns when the speech began."""
    mark = len(peer.events)
    spoken = time.monotonic()
    await speak(peer, seconds)
    await peer.wait_for("output_audio_buffer.stopped", after=mark, timeout=timeout)
    return spoken


def voice_of(heard: np.ndarray, rate: int = 48000) -> np.ndarray:
    """The first stretch of sound in what a peer heard (fails if there is none)."""
    segments = active_segments(heard, rate)
    assert segments, "nothing was heard"
    start, end = segments[0]
    return heard[int(start * rate):int(end * rate)]


async def test_full_turn(gateway: RunningGateway, fake_upstream: FakeRealtimeServer) -> None:
    peer = await connected(gateway)
    try:
        created = peer.of_type("session.created")[0]
        assert created["session"]["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
        assert created["session"]["instructions"].startswith("Você é um assistente")

        await speak(peer)
        started = await peer.wait_for("output_audio_buffer.started", timeout=10)
        user = await peer.wait_for("conversation.item.input_audio_transcription.completed")
        assert user["transcript"] == fake_upstream.behaviour.user_transcript
        stopped = await peer.wait_for("output_audio_buffer.stopped", timeout=10)
        assert stopped["response_id"] == started["response_id"]
        transcript = await peer.wait_for("response.output_audio_transcript.done")
        assert transcript["transcript"] == fake_upstream.behaviour.reply_text
        assert not peer.of_type("response.output_audio.delta"), "audio deltas must travel as media"
        assert all("event_id" in e for e in peer.events)

        # The caller's voice reached the upstream at the right level and pitch.
        session = fake_upstream.sessions[-1]
        heard_upstream = session.received
        segments = active_segments(heard_upstream, 24000)
        assert segments, "no speech reached the upstream"
        start, end = segments[0]
        assert 1.0 <= end - start <= 1.5
        speech = heard_upstream[int(start * 24000):int(end * 24000)]
        assert rms(speech) > 2000
        assert pitch(speech, 24000) == pytest.approx(SPEECH_PITCH, rel=0.03)
        # The gateway configured the session before any audio.
        assert session.client_events[0]["type"] == "session.update"

        # The reply reached the browser: ~2 s of audio at the reply's pitch, then silence.
        await asyncio.sleep(0.3)
        heard = np.concatenate([pcm for _, pcm in peer.heard])
        reply_segments = active_segments(heard, 48000)
        longest = max(reply_segments, key=lambda s: s[1] - s[0])
        assert 1.8 <= longest[1] - longest[0] <= 2.3
        reply = heard[int(longest[0] * 48000):int(longest[1] * 48000)]
        assert pitch(reply, 48000) == pytest.approx(fake_upstream.behaviour.reply_pitch_hz, rel=0.03)
    finally:
        await peer.close()


async def test_second_turn_works_after_the_first(gateway: RunningGateway) -> None:
    peer = await connected(gateway)
    try:
        for _ in range(2):
            await turn(peer)
    finally:
        await peer.close()


async def test_barge_in_by_speaking(gateway: RunningGateway, fake_upstream: FakeRealtimeServer) -> None:
    fake_upstream.behaviour.reply_seconds = 6.0
    peer = await connected(gateway)
    try:
        await speak(peer)
        started = await peer.wait_for("output_audio_buffer.started", timeout=10)
        await asyncio.sleep(1.0)  # let about a second of the reply play
        mark = len(peer.events)
        await speak(peer, 0.8)
        cleared = await peer.wait_for("output_audio_buffer.cleared", after=mark, timeout=5)
        assert cleared["response_id"] == started["response_id"]
        cut_at = time.monotonic()
        truncated = await peer.wait_for("conversation.item.truncated", after=mark, timeout=5)
        # ~1 s of reply played before the user spoke; allow for VAD onset and playout delay.
        assert 700 <= truncated["audio_end_ms"] <= 2000

        # Silence right after the flush: nothing of the old reply arrives later.
        await asyncio.sleep(0.5)
        after = peer.heard_between(cut_at + 0.2, cut_at + 0.5)
        assert rms(after) < 200, "reply audio kept playing after barge-in"

        # The next turn still gets a spoken answer (the bot is not left mute).
        answer = await peer.wait_for("output_audio_buffer.started", after=mark, timeout=15)
        assert answer["response_id"] != started["response_id"]
        session = fake_upstream.sessions[-1]
        assert not [e for e in peer.of_type("error")], peer.of_type("error")
        truncates = session.events_of("conversation.item.truncate")
        assert len(truncates) == 1 and truncates[0]["audio_end_ms"] == truncated["audio_end_ms"]
    finally:
        await peer.close()
