"""Chromium sends Opus in-band FEC once the gateway's answer asks for it and the gateway's receiver
reports show loss; the gateway rebuilds lost frames from it instead of concealing them. RED is
off here: Chromium then sends plain Opus, as it does to a gateway that does not answer RED.

The loss is real: nftables drops 15 % of the packets arriving at the gateway's media ports (the
browser's mic stream; what the gateway sends back is untouched). Needs root and ``nft``.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import GatewayFactory

from .conftest import WEB, answer_ports, dropped_udp, open_page, say, start_call

pytestmark = pytest.mark.browser


async def outbound_audio(page: Any) -> dict[str, float]:
    """Chromium's own view of the mic stream it sends."""
    return await page.evaluate("""async () => {
        const stats = await window.realtimePage.client.peerConnection.getStats();
        let result = {};
        stats.forEach((s) => { if (s.type === 'outbound-rtp' && s.kind === 'audio') result = s; });
        return {bytesSent: result.bytesSent || 0, packetsSent: result.packetsSent || 0};
    }""")


async def test_chromium_sends_fec_and_the_gateway_rebuilds_lost_frames(make_gateway: GatewayFactory,
                                                                       launch) -> None:
    # Without RED and NACK, which would rebuild or resend most lost frames before FEC is tried
    # (tests/browser/test_red.py covers RED; with it FEC only serves a packet's second loss in a row).
    gateway = await make_gateway(web_root=WEB, mic_nack_browsers=False, red=False)
    browser = await launch()
    _, page = await open_page(browser, f"{gateway.url}/?processing=off", mic=True)
    answer = await start_call(page)
    assert "useinbandfec=1" in answer
    (call,) = gateway.state.calls

    before = await outbound_audio(page)
    with dropped_udp(answer_ports(answer), percent=15, inbound_only=True):
        for _ in range(4):  # the browser's encoder follows our receiver reports within seconds
            await say(page, "pt_br_capital_brasil")
            stats = call._peer.receive_stats()
            if stats["frames_fec"] >= 5:
                break
    after = await outbound_audio(page)
    stats = call._peer.receive_stats()
    assert stats["packets_lost"] > 0, stats  # the drops happened…
    assert stats["fec_packets"] > 0, stats  # …Chromium's packets carry LBRR (in-band FEC)…
    assert stats["frames_fec"] >= 5, stats  # …and lost frames came back from it, not from concealment
    payload = (after["bytesSent"] - before["bytesSent"]) / max(1, after["packetsSent"] - before["packetsSent"])
    print(f"receive stats under 15 % loss: {stats}; Chromium's mean payload {payload:.0f} bytes")
