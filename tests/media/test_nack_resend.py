"""NACKs for the gateway's own audio, on both media paths: a real aiortc client loses some of the
gateway's packets on its side of the wire (before SRTP, as a lossy link would), asks for them
with a genuine RTCP NACK (its receiver's own ``_send_rtcp_nack``), and gets the very same
packets back, playable; a peer that NACKs everything gets bounded resends, and the call goes on.
On the native path the native sender resends (``_pump.c``), on the Python path aiortc's, behind
the same bounds (:mod:`gateway.media.native.nack_resend`)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from gateway.media import native
from gateway.media.native import nack_resend
from gateway.media.opus import OpusDecoder
from gateway.media.outbound_codec import OpusPacketizer
from tests.conftest import GatewayFactory
from tests.peers import ClientPeer


def rtp_seq(data: bytes) -> int | None:
    """The sequence number of an SRTP RTP datagram (in the clear), or None for anything else."""
    if len(data) < 12 or not 127 < data[0] < 192 or 192 <= data[1] <= 208:
        return None
    return int.from_bytes(data[2:4], "big")


class LossyWire:
    """The client's end of the wire: records every RTP datagram the gateway sends, and drops the
    first copy of each sequence number in ``drop`` before aiortc's SRTP sees it."""

    def __init__(self, peer: ClientPeer) -> None:
        self.receiver = peer.pc.getTransceivers()[0].receiver
        self.drop: set[int] = set()
        self.dropped: dict[int, bytes] = {}
        self.arrived: list[tuple[int, bytes]] = []
        self.ssrc: int | None = None
        self.played: dict[int, bytes] = {}  # sequence number → payload, as aiortc's receiver got it
        ice = self.receiver.transport.transport
        recv = ice._recv

        async def lossy() -> bytes:
            while True:
                data: bytes = await recv()
                seq = rtp_seq(data)
                if seq is None:
                    return data
                self.ssrc = int.from_bytes(data[8:12], "big")
                self.arrived.append((seq, data))
                if seq in self.drop and seq not in self.dropped:
                    self.dropped[seq] = data
                    continue
                return data

        ice._recv = lossy
        handle = self.receiver._handle_rtp_packet

        async def played(packet: Any, arrival_time_ms: int) -> None:
            self.played.setdefault(packet.sequence_number, packet.payload)
            await handle(packet, arrival_time_ms)

        self.receiver._handle_rtp_packet = played

    def latest(self) -> int:
        return self.arrived[-1][0]

    async def nack(self, lost: list[int]) -> None:
        assert self.ssrc is not None
        await self.receiver._send_rtcp_nack(self.ssrc, lost)


async def call_on(make_gateway: GatewayFactory, media_path: str) -> tuple[Any, ClientPeer, LossyWire]:
    gateway = await make_gateway(media_path=media_path)
    peer = ClientPeer(gateway.url, packetize=OpusPacketizer())
    await peer.connect()
    wire = LossyWire(peer)
    await peer.channel_open()
    await peer.wait_for("session.created")
    await asyncio.sleep(0.5)  # the gateway's stream runs (silence between replies is sent too)
    (call,) = gateway.state.calls
    assert call._peer.media_path == media_path
    assert (call._peer.native is not None and call._peer.native.sending) == (media_path == "native")
    return call, peer, wire


def resent(call: Any) -> dict[str, int]:
    """The native sender's resend counters (nothing on the Python path)."""
    native_media = call._peer.native
    return native_media.counts() if native_media is not None else {}


async def test_a_lost_packet_of_the_gateways_voice_comes_back_when_nacked(make_gateway: GatewayFactory,
                                                                          media_path: str) -> None:
    call, peer, wire = await call_on(make_gateway, media_path)
    try:
        start = (wire.latest() + 5) % 65536
        wire.drop = {start, (start + 1) % 65536, (start + 4) % 65536}  # a pair and a single, as on a lossy link
        await asyncio.sleep(0.3)
        assert set(wire.dropped) == wire.drop  # they were sent, and "lost"
        assert not wire.drop & set(wire.played)
        await wire.nack(sorted(wire.drop))
        await asyncio.sleep(0.2)
        counts = resent(call)
    finally:
        await peer.close()
    copies = Counter(seq for seq, _ in wire.arrived)
    assert all(copies[seq] == 2 for seq in wire.drop), copies  # each came once more…
    again = {seq: data for seq, data in wire.arrived[::-1] if seq in wire.drop}
    assert again == wire.dropped  # …byte for byte the datagram that was lost (native: kept; aiortc: the same
    # packet protected again at the same index, which AES-CM and its tag make the same bytes)…
    assert set(wire.played) >= wire.drop  # …and it passed the client's SRTP and reached its receiver
    decoder = OpusDecoder()
    assert all(len(decoder.decode(wire.played[seq])) == 960 for seq in sorted(wire.drop))  # 20 ms of audio each
    if media_path == "native":
        assert counts["resent"] == 3 and counts["resend_unknown"] == 0


async def test_a_flood_of_nacks_gets_bounded_resends_and_the_call_goes_on(make_gateway: GatewayFactory,
                                                                          media_path: str) -> None:
    call, peer, wire = await call_on(make_gateway, media_path)
    try:
        first = len(wire.arrived)
        for _ in range(100):  # every 20 ms for 2 s, everything of the last second, twice per packet
            latest = wire.latest()
            await wire.nack(sorted({(latest - i) % 65536 for i in range(50)}))
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)  # the last resends arrive (nothing is asked for after)
        counts, arrived = resent(call), list(wire.arrived)
        flood = arrived[first:]
    finally:
        await peer.close()
    seen: set[int] = set()
    originals, resends = [], []
    for seq, data in arrived:  # the first copy of a sequence number is the stream, later ones resends
        (resends if seq in seen else originals).append(data)
        seen.add(seq)
    copies = Counter(seq for seq, _ in arrived)
    stream_bytes, resent_bytes = sum(map(len, originals)), sum(map(len, resends))
    print(f"NACK flood, {media_path} path: {counts}; stream {len(originals)} packets / {stream_bytes} B, "
          f"resent {len(resends)} / {resent_bytes} B")
    assert len({seq for seq, _ in flood}) >= 90  # the stream went on (~100 in 2 s)
    assert resends and max(copies.values()) <= 1 + nack_resend.PER_PACKET  # resends, each at most twice…
    if media_path == "native":  # …within half the stream's bytes (aiortc's budget counts payload bytes only)
        pump = native.load()  # the same bounds as aiortc's resends get
        assert (pump.RESENDS_PER_PACKET, pump.RESEND_SHARE, pump.RESEND_BURST) == (
            nack_resend.PER_PACKET, nack_resend.SHARE, nack_resend.BURST)
        assert counts["resent"] == len(resends) and counts["resend_over_budget"] > 0
        assert resent_bytes <= stream_bytes / nack_resend.SHARE
    else:
        assert resent_bytes <= stream_bytes / nack_resend.SHARE + 64 * len(resends)  # headers and SRTP tags


@pytest.mark.skipif(native.available() is not None, reason=str(native.available()))
async def test_nacks_are_left_to_aiortc_when_its_internals_moved(make_gateway: GatewayFactory,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def moved() -> None:
        raise nack_resend.NackInternalsError("aiortc changed (test)")

    monkeypatch.setattr(nack_resend, "check_nack_internals", moved)
    call, peer, wire = await call_on(make_gateway, "native")
    try:
        assert "_handle_rtcp_packet" not in vars(call._peer._sender)  # nothing put in front of aiortc's
        latest = wire.latest()
        await wire.nack([latest])
        await asyncio.sleep(0.2)
        assert call._peer.native.counts()["resent"] == 0 and call._peer.native.sending  # still native
    finally:
        await peer.close()


def test_aiortcs_resends_get_the_native_senders_bounds() -> None:
    budget = nack_resend.ResendBudget(per_packet=2, share=2, burst=1000)
    assert not budget.allow(1, 960, 100, sent=100, now=0.0)  # 50 bytes of budget: not enough for 100
    assert budget.allow(1, 960, 100, sent=300, now=0.0)  # 150
    assert not budget.allow(1, 960, 40, sent=300, now=0.05, spacing=0.1)  # asked again within the round trip
    assert budget.allow(1, 960, 40, sent=300, now=0.1, spacing=0.1)
    assert not budget.allow(1, 960, 10, sent=10_000, now=5.0)  # twice already, however much budget
    assert budget.allow(1 + 128, 960 * 129, 10, sent=10_000, now=5.0)  # a newer packet in the same history slot
    assert budget.allow(2, 1920, 990, sent=10_000, now=5.0)  # saved up: capped at the burst (1000 - 10)…
    assert not budget.allow(3, 2880, 10, sent=10_000, now=5.0)  # …and spent
