"""Whole calls on both media paths (MEDIA_PATH=native|python): a real aiortc browser stand-in, a
real gateway, the fake upstream. The key end-to-end tests of tests/server/test_call.py run here
once per path; the rest checks what the native path must keep: audio that sounds like what was
sent both ways, the 20 ms cadence, RTCP both ways, and the start-up choice of path."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import numpy as np
import pytest

from gateway.config import ConfigError
from gateway.media import native
from gateway.media.outbound_codec import OpusPacketizer
from tests.audio_tools import active_segments, pitch, rms, voiced
from tests.conftest import GatewayFactory, RunningGateway, gateway_config
from tests.fake_upstream import FakeRealtimeServer
from tests.peers import ClientPeer
from tests.server.test_call import test_barge_in_by_speaking, test_full_turn  # noqa: F401  (run per path)

SPEECH_PITCH = 160.0


@pytest.fixture
async def gateway(make_gateway: GatewayFactory, media_path: str) -> RunningGateway:
    """The imported tests' gateway, on each media path."""
    return await make_gateway(media_path=media_path)


def count_arrivals(peer: ClientPeer) -> list[float]:
    """Arrival times of the gateway's RTP packets at the peer (still decoded as usual)."""
    arrivals: list[float] = []
    receiver = peer.pc.getTransceivers()[0].receiver
    handler = receiver._handle_rtp_packet

    async def arrived(packet: Any, arrival_time_ms: int) -> None:
        arrivals.append(time.monotonic())
        await handler(packet, arrival_time_ms)

    receiver._handle_rtp_packet = arrived
    return arrivals


async def stats_of(peer: ClientPeer, kind: str) -> list[Any]:
    report = await peer.pc.getStats()
    return [s for s in report.values() if s.type == kind]


async def test_a_call_on_each_path_sounds_right_and_keeps_rtcp(gateway: RunningGateway, media_path: str,
                                                               fake_upstream: FakeRealtimeServer) -> None:
    fake_upstream.behaviour.reply_seconds = 2.0
    peer = ClientPeer(gateway.url, packetize=OpusPacketizer())
    arrivals = count_arrivals(peer)
    await peer.connect()
    await peer.channel_open()
    await peer.wait_for("session.created")
    try:
        peer.mic.say(voiced(1.5, SPEECH_PITCH, 48000, seed=4))
        await peer.wait_for("output_audio_buffer.started", timeout=10)
        await peer.wait_for("output_audio_buffer.stopped", timeout=10)
        window_start = time.monotonic()
        await asyncio.sleep(3.0)  # RTCP is sent every 0.5–1.5 s
        window = [t for t in arrivals if t >= window_start]
        call = next(iter(gateway.state.calls))
        browser_peer = call._peer
        # The path asked for is the path used.
        assert browser_peer.media_path == media_path
        if media_path == "native":
            assert browser_peer.native is not None and browser_peer.native.receiving and browser_peer.native.sending
            counts = browser_peer.native.counts()
            assert counts["received"] >= 150 and counts["sent"] >= 150
            assert counts["handed_back"] >= 2  # the browser's SRTCP and STUN consent went to aiortc/aioice
            assert counts["undecryptable"] == 0 and counts["malformed"] == 0 and counts["send_dropped"] == 0
        else:
            assert browser_peer.native is None
        # RTCP both ways: the gateway's receiver reports reach the browser (no loss on loopback)…
        remote_inbound = await stats_of(peer, "remote-inbound-rtp")
        assert remote_inbound and remote_inbound[0].packetsLost == 0 and remote_inbound[0].fractionLost == 0
        # …its sender reports count what it sent…
        remote_outbound = await stats_of(peer, "remote-outbound-rtp")
        assert remote_outbound and remote_outbound[0].packetsSent >= 100
        # …and the browser's receiver reports reach the gateway's sender (the FEC/RED tuning reads them).
        gateway_stats = await browser_peer._sender.getStats()
        assert [s for s in gateway_stats.values() if s.type == "remote-inbound-rtp"]
    finally:
        await peer.close()
    # The cadence out: 50 packets a second, no gap a listener would hear.
    assert 145 <= len(window) <= 155
    assert max(np.diff(window)) < 0.1
    # The caller's voice reached the upstream at its level and pitch.
    heard_upstream = fake_upstream.sessions[-1].received
    segments = active_segments(heard_upstream, 24000)
    assert segments, "no speech reached the upstream"
    start, end = segments[0]
    speech = heard_upstream[int(start * 24000):int(end * 24000)]
    assert 1.3 <= end - start <= 1.8
    assert rms(speech) > 2000 and pitch(speech, 24000) == pytest.approx(SPEECH_PITCH, rel=0.03)
    # The reply reached the caller at the reply's pitch.
    heard = np.concatenate([pcm for _, pcm in peer.heard])
    reply_segments = active_segments(heard, 48000)
    assert reply_segments
    longest = max(reply_segments, key=lambda s: s[1] - s[0])
    assert 1.7 <= longest[1] - longest[0] <= 2.3
    reply = heard[int(longest[0] * 48000):int(longest[1] * 48000)]
    assert pitch(reply, 48000) == pytest.approx(fake_upstream.behaviour.reply_pitch_hz, rel=0.03)


async def test_native_asked_for_but_not_built_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(native, "available", lambda: "the native media path is not built (test)")
    with pytest.raises(ConfigError, match="MEDIA_PATH is native, but the native media path is not built"):
        gateway_config(media_path="native")
    with pytest.raises(ConfigError, match="MEDIA_PATH must be auto, native or python"):
        gateway_config(media_path="fast")


async def test_auto_falls_back_to_python_with_one_warning(monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(native, "available", lambda: "the native media path is not built (test)")
    native.announce.cache_clear()
    config = gateway_config(media_path="auto")
    assert config.resolved_media_path == "python"
    with caplog.at_level(logging.INFO, logger="gateway.media.native"):
        for _ in range(3):  # three calls, one warning
            assert native.announce_config(config) == "python"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "not built" in warnings[0].getMessage()
    native.announce.cache_clear()
