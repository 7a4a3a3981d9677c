"""Hostile RTP against a running gateway process: what reaches (and is billed by) the upstream.

One gateway process (``--workers 1``, so both calls share its event loop) in front of the fake
upstream; a well-behaved aiortc caller and a hostile one whose RTP lies (see
:class:`~tests.media.hostile_rtp.HostileRtp`). What an operator would notice is asserted: mic
audio seconds the upstream received per wall-clock second, the gateway's RSS, whether the other
call's frames kept arriving at 50 a second with the voice that was sent, and whether a silent
browser still costs upstream audio.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.media.outbound_codec import OpusPacketizer
from tests.audio_tools import pitch, rms, voiced
from tests.conftest import free_port, wait_healthy
from tests.fake_upstream import FakeRealtimeServer, FakeSession
from tests.media.hostile_rtp import HostileRtp, UpstreamMeter
from tests.peers import ClientPeer

ROOT = Path(__file__).resolve().parents[2]
GOOD_PITCH = 180.0
HOSTILE_S = 6.0  # each misbehaviour lasts this long


@dataclass
class GatewayProcess:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(status.split("VmRSS:")[1].split()[0]) / 1024

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
async def start_gateway(fake_upstream: FakeRealtimeServer, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """``await start_gateway(ENV=value…)``: one gateway process; settings travel as env vars."""
    started: list[GatewayProcess] = []

    async def start(**env: str) -> GatewayProcess:
        port = free_port()
        log = tmp_path / f"gateway-{port}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", "gateway", "--workers", "1", "--upstream", "url",
                 "--upstream-url", fake_upstream.url, "--openai-api-key", "sk-test-upstream-key",
                 "--host", "127.0.0.1", "--port", str(port), "--rate-limit", "100000",
                 "--runtime-dir", str(tmp_path), "--shutdown-drain-timeout", "1"],
                cwd=ROOT, env={**os.environ, **env}, stdout=sink, stderr=subprocess.STDOUT)
        gateway = GatewayProcess(f"http://127.0.0.1:{port}", process, log)
        started.append(gateway)
        await wait_healthy(gateway.url)
        return gateway

    yield start
    for gateway in started:
        gateway.process.terminate()
        assert gateway.process.wait(30) == 0, gateway.log_text()[-3000:]


async def caller(url: str, upstream: FakeRealtimeServer) -> tuple[ClientPeer, FakeSession, UpstreamMeter]:
    """A connected caller (mono voice Opus, as Chromium sends), the upstream session of its call
    and a meter on that session."""
    before = len(upstream.sessions)
    peer = ClientPeer(url, packetize=OpusPacketizer())
    await peer.connect()
    await peer.channel_open()
    await peer.wait_for("session.created")
    assert len(upstream.sessions) == before + 1
    session = upstream.sessions[-1]
    return peer, session, UpstreamMeter(session).start()


# What the gateway logs, once, when a limit starts to hold (an operator's clue).
LOGGED = {
    "flood": "mic packets arrive faster than",
    "churn": "packets of any further SSRC are ignored",
    "ssrc_flood": "packets of any further SSRC are ignored",
    "jump": "asked for audio faster than real time",
    "long_packets": "asked for audio faster than real time",
}


@pytest.mark.parametrize("mode", ["normal", "jump", "churn", "flood", "duplicate", "long_packets", "ssrc_flood"])
async def test_a_lying_mic_is_never_billed_beyond_real_time_and_other_calls_stay_on_time(
        start_gateway: Callable[..., Any], fake_upstream: FakeRealtimeServer, mode: str) -> None:
    fake_upstream.behaviour.vad_rms = 1e9  # no replies: only the mic path is measured
    gateway = await start_gateway()
    good, good_session, good_meter = await caller(gateway.url, fake_upstream)
    bad, _, bad_meter = await caller(gateway.url, fake_upstream)
    hostile = HostileRtp(bad)
    try:
        good.mic.say(voiced(HOSTILE_S + 4, GOOD_PITCH, 48000, seed=7))
        bad.mic.say(voiced(HOSTILE_S + 4, 140.0, 48000, seed=3))
        await asyncio.sleep(1.5)
        rss_before = gateway.rss_mb()
        start, frames = time.monotonic(), bad.mic.frames_sent
        hostile.mode = mode
        await asyncio.sleep(HOSTILE_S)
        end, frames = time.monotonic(), bad.mic.frames_sent - frames
        hostile.mode = "normal"
        rss_after = gateway.rss_mb()
        await asyncio.sleep(0.5)
    finally:
        for meter in (good_meter, bad_meter):
            await meter.stop()
        await bad.close()
        await good.close()

    ratio = bad_meter.seconds(start, end) / (end - start)
    worst = bad_meter.worst_ratio(start, end, 5.0)
    good_rate = good_meter.appends(start, end) / (end - start)
    stall = good_meter.longest_stall(start, end)
    first, last = good_meter.pcm(start + 0.5, end)
    heard = good_session.received[first:last]
    print(f"\n[{mode}] hostile call: {bad_meter.seconds(start, end):.2f} s of mic audio upstream in "
          f"{end - start:.2f} s ({ratio:.2f}x, worst 5 s window {worst:.2f}x); {frames} frames encoded, "
          f"packets sent {dict(hostile.sent)} under {len(hostile.ssrcs_used)} SSRCs; gateway RSS "
          f"{rss_before:.1f} -> {rss_after:.1f} MB; other call {good_rate:.1f} appends/s, longest stall "
          f"{stall * 1000:.0f} ms, pitch {pitch(heard, 24000):.0f} Hz, rms {rms(heard):.0f}")
    assert ratio <= 1.05 and worst <= 1.05  # never billed beyond real time
    if mode in ("normal", "duplicate", "flood", "long_packets", "ssrc_flood"):
        assert ratio >= 0.9  # a well-numbered stream (under whatever else) still goes through at real time
    assert rss_after - rss_before < 2.0
    assert 47.5 <= good_rate <= 52.5 and stall < 0.5  # the other call: 50 frames a second, none held up…
    assert pitch(heard, 24000) == pytest.approx(GOOD_PITCH, rel=0.03) and rms(heard) > 2000  # …of its voice
    if mode in LOGGED:  # said once, about the hostile call
        call_id = (bad.location or "").rsplit("/", 1)[-1]
        lines = [line for line in gateway.log_text().splitlines() if LOGGED[mode] in line and call_id in line]
        assert len(lines) == 1, lines


async def test_a_silent_mic_costs_nothing_upstream_and_resumes_at_once(
        start_gateway: Callable[..., Any], fake_upstream: FakeRealtimeServer) -> None:
    """A browser that keeps its connection (ICE, RTCP) but stops sending RTP for 5 s, with a
    PEER_TIMEOUT long enough that it is not taken for gone."""
    fake_upstream.behaviour.vad_rms = 1e9
    gateway = await start_gateway(PEER_TIMEOUT="8", MIC_SILENCE_STOP="2")
    peer, _, meter = await caller(gateway.url, fake_upstream)
    hostile = HostileRtp(peer)
    try:
        peer.mic.say(voiced(12, 140.0, 48000, seed=3))
        await asyncio.sleep(1.5)
        hostile.mode = "silent"
        silent_from = time.monotonic()
        await asyncio.sleep(5.0)
        hostile.mode = "normal"
        back = time.monotonic()
        await asyncio.sleep(2.0)
        state = peer.pc.connectionState
    finally:
        await meter.stop()
        await peer.close()
    bridged = meter.seconds(silent_from, back)
    last = max((r.at for r, before in zip(meter.readings[1:], meter.readings, strict=False)
                if silent_from <= r.at < back and r.appends > before.appends), default=silent_from)
    resumed = meter.first_append(back)
    after = meter.seconds(back, back + 2.0)
    print(f"\n[silent] {bridged:.2f} s of audio upstream during 5 s without mic packets, the last "
          f"{last - silent_from:.2f} s in; first append {((resumed or back) - back) * 1000:.0f} ms after "
          f"the mic came back; {after:.2f} s of audio in the 2 s after")
    assert 1.5 <= bridged <= 2.3  # concealment bridged MIC_SILENCE_STOP (a stall, a fade to silence)…
    assert meter.appends(silent_from + 2.4, back) == 0  # …then nothing was billed
    assert resumed is not None and resumed - back < 0.3  # and the mic's audio flows again at once
    assert after >= 1.6
    assert state == "connected" and not peer.of_type("error")  # the browser was never taken for gone
