"""RED (RFC 2198) both ways with real Chromium: negotiated in the answer, on the wire, and worth it.

Chromium offers ``red/48000/2`` (``a=fmtp:63 111/111``); the gateway answers it first, so
Chromium's mic packets arrive as PT 63 carrying the previous frame, and the gateway's own
packets to Chromium carry theirs. Under real loss (nftables drops on this host, root only) the
gateway rebuilds lost mic frames from the copies at full quality, and Chromium conceals far less
of what the gateway sends than in a call without RED. Without RED, the gateway resends what
Chromium NACKs (both media paths), and Chromium conceals far less than when nothing comes back.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest
from aiortc.rtcrtpsender import RTCRtpSender

from gateway.media.native.call_media import NativeCallMedia
from gateway.webrtc import browser_peer
from tests.conftest import GatewayFactory

from .conftest import WEB, answer_ports, dropped_udp, open_page, say, start_call

pytestmark = pytest.mark.browser


async def inbound_audio(page: Any) -> dict[str, Any]:
    """Chromium's view of the audio it receives from the gateway (getStats ``inbound-rtp``)."""
    return await page.evaluate("""async () => {
        const stats = await window.realtimePage.client.peerConnection.getStats();
        let inbound = {}; const codecs = {};
        stats.forEach((s) => {
            if (s.type === 'inbound-rtp' && s.kind === 'audio') inbound = s;
            if (s.type === 'codec') codecs[s.id] = s.mimeType;
        });
        return {concealed: inbound.concealedSamples || 0, total: inbound.totalSamplesReceived || 0,
                packets: inbound.packetsReceived || 0, lost: inbound.packetsLost || 0,
                nacks: inbound.nackCount || 0, codec: codecs[inbound.codecId] || null};
    }""")


@contextmanager
def dropped_to_browser(ports: set[int], percent: float) -> Iterator[None]:
    """nftables drops ``percent`` of the UDP packets the gateway sends (source port in ``ports``)."""
    if os.geteuid() != 0 or shutil.which("nft") is None:
        pytest.fail("this test needs root and nft: run scripts/setup_net.sh as root")
    table = "inet red_test_drops"
    listed = ", ".join(str(p) for p in sorted(ports))
    script = (f"add table {table}\n"
              f"add chain {table} input {{ type filter hook input priority -10 ; policy accept ; }}\n"
              f"add rule {table} input udp sport {{ {listed} }} numgen random mod 10000 < {round(percent * 100)} "
              "counter drop\n")
    subprocess.run(["nft", "-f", "-"], input=script, text=True, check=True)
    try:
        yield
    finally:
        subprocess.run(["nft", "delete", "table", *table.split()], check=False)


def audio_formats(answer: str) -> list[str]:
    line = next(line for line in answer.splitlines() if line.startswith("m=audio "))
    return line.split()[3:]


async def test_red_is_negotiated_and_carries_copies_both_ways(make_gateway: GatewayFactory, launch) -> None:
    gateway = await make_gateway(web_root=WEB)
    browser = await launch()
    _, page = await open_page(browser, f"{gateway.url}/?processing=off", mic=True)
    answer = await start_call(page)
    red_type = re.search(r"^a=rtpmap:(\d+) red/48000/2\r?$", answer, re.M)
    assert red_type, answer
    opus_type = re.search(r"^a=rtpmap:(\d+) opus/48000/2\r?$", answer, re.M)
    assert opus_type, answer
    assert audio_formats(answer)[0] == red_type.group(1), answer  # first: Chromium sends with it
    assert f"a=fmtp:{red_type.group(1)} {opus_type.group(1)}/{opus_type.group(1)}" in answer, answer
    (call,) = gateway.state.calls

    with dropped_udp(answer_ports(answer), percent=15, inbound_only=True):  # the mic stream only
        for _ in range(3):
            await say(page, "pt_br_capital_brasil")
            if call._peer.receive_stats()["frames_red"] >= 5:
                break
    stats = call._peer.receive_stats()
    seen = await inbound_audio(page)
    print(f"gateway receive stats with RED under 15 % loss: {stats}; Chromium inbound: {seen}")
    assert stats["red_packets"] > 0.5 * stats["packets_sent"], stats  # Chromium's packets are RED with copies…
    assert stats["packets_lost"] > 0, stats  # …the drops happened…
    assert stats["frames_red"] >= 5, stats  # …and lost frames came back from the copies
    assert stats["frames_red"] > stats["frames_concealed"], stats
    red_out = call._peer._red.red
    assert red_out is not None and red_out.redundant_bytes > 0  # the gateway's packets carry copies too
    assert seen["packets"] > 100 and seen["total"] > 0, seen  # and Chromium plays them


@dataclass
class Concealment:
    ratio: float  # Chromium's concealed / received samples while the loss ran
    chromium: dict[str, Any]  # its inbound-rtp figures at the end
    packets: int  # packets Chromium received meanwhile
    nacks: int  # NACKs Chromium sent meanwhile (its inbound-rtp nackCount)
    resent: int | None  # packets the gateway resent for them (native path; None on the Python path)
    native: dict[str, int]  # the native path's counters (empty on the Python path)


async def concealment(make_gateway: GatewayFactory, launch, *, loss: float, **overrides: Any) -> Concealment:
    """Chromium's concealment of the gateway's stream over ~12 s at ``loss`` % (``overrides``: the
    gateway's settings)."""
    gateway = await make_gateway(web_root=WEB, **overrides)
    browser = await launch()
    _, page = await open_page(browser, f"{gateway.url}/?processing=off", mic=True)
    answer = await start_call(page)
    (call,) = gateway.state.calls
    await asyncio.sleep(1.0)
    before = await inbound_audio(page)
    with dropped_to_browser(answer_ports(answer), loss):
        await say(page, "pt_br_capital_brasil")  # the fake upstream answers: speech and silence both count
        await asyncio.sleep(6.0)
    after = await inbound_audio(page)
    total = after["total"] - before["total"]
    native = call._peer.native
    counts = native.counts() if native is not None else {}
    return Concealment((after["concealed"] - before["concealed"]) / max(1, total), after,
                       after["packets"] - before["packets"], after["nacks"] - before["nacks"], counts.get("resent"),
                       counts)


async def concealed_ratio(make_gateway: GatewayFactory, launch, *, loss: float) -> tuple[float, dict[str, Any]]:
    """Chromium's concealed / received samples of the gateway's stream over ~12 s at ``loss`` %.
    NACK stays out of it (``mic_nack_browsers=False``): with it Chromium asks for the gateway's lost
    packets too, and the gateway resends them (both media paths), which is not what RED does."""
    seen = await concealment(make_gateway, launch, loss=loss, mic_nack_browsers=False)
    return seen.ratio, seen.chromium


async def test_red_halves_what_chromium_conceals_at_ten_percent_loss(make_gateway: GatewayFactory, launch,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    with_red, red_stats = await concealed_ratio(make_gateway, launch, loss=10)
    monkeypatch.setattr(browser_peer, "accept_red", lambda transceiver, offer: None)  # the call before RED
    without_red, plain_stats = await concealed_ratio(make_gateway, launch, loss=10)
    print(f"Chromium concealed at 10 % loss: {100 * with_red:.1f} % with RED ({red_stats}), "
          f"{100 * without_red:.1f} % without ({plain_stats})")
    assert without_red > 0.02, plain_stats  # the loss reached Chromium…
    assert with_red <= 0.5 * without_red, (with_red, without_red)  # …and RED at least halved what it conceals


@pytest.mark.parametrize(("red", "loss"), [(False, 10), (True, 30)], ids=["opus", "red"])
async def test_chromium_resends_the_mic_packets_the_gateway_nacks(make_gateway: GatewayFactory, launch,
                                                                 red: bool, loss: float) -> None:
    """Chromium offers no ``a=rtcp-fb:111 nack`` for audio, but libwebrtc's audio sender keeps and
    resends packets once the negotiated Opus has NACK feedback: answered anyway
    (``MIC_NACK_BROWSERS``, the default), the gateway's NACKs for the mic packets nftables drops
    come back — plain Opus, and RED packets (with RED only runs of losses are asked for: a single
    loss comes back from the next packet's copy, hence the higher loss there)."""
    gateway = await make_gateway(web_root=WEB, red=red)
    browser = await launch()
    _, page = await open_page(browser, f"{gateway.url}/?processing=off", mic=True)
    answer = await start_call(page)
    opus_type = re.search(r"^a=rtpmap:(\d+) opus/48000/2\r?$", answer, re.M)
    assert opus_type and f"a=rtcp-fb:{opus_type.group(1)} nack" in answer.splitlines(), answer
    (call,) = gateway.state.calls
    mic = call._peer.mic
    with dropped_udp(answer_ports(answer), percent=loss, inbound_only=True):  # the mic stream only
        await say(page, "pt_br_capital_brasil")
    await asyncio.sleep(1.0)
    stats, nack = mic.buffer.stats, mic.buffer.nack
    print(f"Chromium mic under {loss} % loss with NACK answered (RED {red}): {call._peer.receive_stats()}; "
          f"NACKed {stats.nacked}, answered {nack.answered}, resent in time {stats.resent}, late {stats.late}")
    assert red == (call._peer.receive_stats()["red_packets"] > 0)
    assert stats.nacked >= 5, stats  # the drops happened and were asked for (no reordering on loopback)…
    assert nack.answered >= 0.5 * nack.requested, (nack.answered, nack.requested)  # …and Chromium resent them
    assert stats.resent >= 1, stats  # (played from the resend: loopback round trips fit the wait)


@pytest.mark.parametrize("media_path", ["native", "python"])
async def test_resending_what_chromium_nacks_cuts_what_it_conceals(make_gateway: GatewayFactory, launch,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  media_path: str) -> None:
    """RED off, NACK answered (``MIC_NACK_BROWSERS``, so Chromium's receiver asks for the gateway's
    lost packets too) at 10 % loss: with the gateway's resends (the native sender's history, or
    aiortc's on the Python path) against the same call with resends switched off."""
    settings = dict(red=False, mic_nack_browsers=True, media_path=media_path)
    resending = await concealment(make_gateway, launch, loss=10, **settings)
    if media_path == "native":
        monkeypatch.setattr(browser_peer, "NativeCallMedia", partial(NativeCallMedia, resend_nacks=False))
    else:
        async def unanswered(sender: RTCRtpSender, sequence_number: int) -> None:
            return None

        monkeypatch.setattr(RTCRtpSender, "_retransmit", unanswered)
    silent = await concealment(make_gateway, launch, loss=10, **settings)
    print(f"Chromium concealed at 10 % loss, RED off, NACK on, {media_path} path: {100 * resending.ratio:.1f} % "
          f"with resends ({resending.nacks} NACKs, {resending.resent} resent; {resending.chromium}; {resending.native}), "
          f"{100 * silent.ratio:.1f} % without ({silent.nacks} NACKs; {silent.chromium})")
    assert silent.ratio > 0.02 and silent.nacks > 0, silent  # the loss reached Chromium, which asked…
    assert resending.nacks > 0, resending
    if media_path == "native":
        assert resending.resent and resending.resent >= 0.03 * resending.packets, resending  # …we resent…
        assert silent.resent == 0, silent
    assert resending.ratio <= 0.5 * silent.ratio, (resending.ratio, silent.ratio)  # …and it was played
