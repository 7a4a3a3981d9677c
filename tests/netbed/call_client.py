"""Runs inside the bed's client namespace: one call that says a WAV, waits for the answer, and
prints what it saw as JSON (frames sent, set-up times, events, frames heard).

The sender is Chrome-like by default (Opus with in-band FEC, ``--sender fec``); ``--sender aiortc``
is aiortc's own encoder (stereo, no FEC: a sender without FEC); ``--red`` offers and sends RED
as Chromium does (:mod:`tests.netbed.red_client`); ``--tuned-timers`` gives the client the fast
DTLS/SCTP retransmission a browser has (:mod:`gateway.webrtc.transport_timers`); ``--offer-nack``
offers ``a=rtcp-fb:<opus> nack`` (aiortc's sender answers NACKs for audio anyway, but offers none);
``--setup-only`` measures the set-up and hangs up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
from aiortc import RTCSessionDescription

from gateway.media.audio_receiver import RtpMicSource
from gateway.media.outbound_codec import OpusPacketizer
from gateway.media.resample import Upsampler
from gateway.webrtc.red_audio import RedPacketizer
from gateway.webrtc.transport_timers import TransportTimers, tune_transport_timers
from tests.audio_tools import read_wav
from tests.peers import ClientPeer

from .red_client import use_red


def offer_nack(sdp: str) -> str:
    """``sdp`` with generic NACK offered for every Opus payload type of its audio sections."""
    newline = "\r\n" if "\r\n" in sdp else "\n"
    out = []
    for line in sdp.split(newline):
        out.append(line)
        match = re.match(r"a=rtpmap:(\d+) opus/", line, re.IGNORECASE)
        if match:
            out.append(f"a=rtcp-fb:{match.group(1)} nack")
    return newline.join(out)


def timed_setup(peer: ClientPeer, tune: bool, nack: bool = False) -> dict[str, float]:
    """Offer → connected / data channel open, in seconds (filled in as they happen)."""
    times: dict[str, float] = {}
    create_offer = peer.pc.createOffer
    set_local = peer.pc.setLocalDescription

    async def offer() -> Any:
        times["offer"] = time.monotonic()
        return await create_offer()

    async def set_local_and_tune(description: Any) -> None:
        if nack and description.type == "offer":
            description = RTCSessionDescription(sdp=offer_nack(description.sdp), type="offer")
        await set_local(description)
        if tune:
            tune_transport_timers(peer.pc, TransportTimers(setup_copies=0))  # a browser sends each datagram once

    peer.pc.createOffer = offer  # type: ignore[method-assign]
    peer.pc.setLocalDescription = set_local_and_tune  # type: ignore[method-assign]

    @peer.pc.on("connectionstatechange")
    def _state() -> None:
        if peer.pc.connectionState == "connected":
            times.setdefault("connected", time.monotonic())

    @peer.pc.on("iceconnectionstatechange")
    def _ice() -> None:
        if peer.pc.iceConnectionState == "completed":
            times.setdefault("ice", time.monotonic())

    return times


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--wav", type=Path, action="append", default=[], help="said in order, 1.5 s apart")
    parser.add_argument("--expected-loss", type=int, default=10)
    parser.add_argument("--hold", type=float, default=3.0, help="seconds to stay after the reply")
    parser.add_argument("--sender", choices=("fec", "aiortc"), default="fec")
    parser.add_argument("--red", action="store_true")
    parser.add_argument("--tuned-timers", action="store_true")
    parser.add_argument("--offer-nack", action="store_true")
    parser.add_argument("--reply-optional", action="store_true", help="a reply that never ends is no failure")
    parser.add_argument("--setup-only", action="store_true")
    args = parser.parse_args()
    packetize: Any = None
    red: RedPacketizer | None = None
    if args.sender == "fec":
        opus = OpusPacketizer()
        opus.encoder.set_packet_loss_perc(args.expected_loss)  # what Chrome does from our reports
        packetize = red = RedPacketizer(opus)
    peer = ClientPeer(args.url, packetize=packetize)
    if args.red:
        assert red is not None, "--red needs --sender fec"
        use_red(peer.pc, red)
    times = timed_setup(peer, args.tuned_timers, args.offer_nack)
    result: dict[str, Any] = {}
    listener: asyncio.Task[int] | None = None
    try:
        await peer.connect()
        await peer.channel_open(timeout=30)
        opened = time.monotonic()
        result["setup"] = {"ice_s": times.get("ice", opened) - times["offer"],
                           "connected_s": times.get("connected", opened) - times["offer"],
                           "open_s": opened - times["offer"]}
        if args.setup_only:
            return
        if red is not None and red.red is not None:  # the gateway's RED: hear it through our own path
            receiver = next(t.receiver for t in peer.pc.getTransceivers() if t.kind == "audio")
            listener = asyncio.create_task(count_frames(RtpMicSource.attach(receiver)))
        await peer.wait_for("session.created", timeout=20)
        pieces = [np.zeros(24000 * 3 // 2, np.int16)]
        for path in args.wav:
            speech, rate = read_wav(path)
            assert rate == 24000
            pieces += [speech, np.zeros(24000 * 3 // 2, np.int16)]
        done_speaking = peer.mic.say(Upsampler().process(np.concatenate(pieces)))
        await asyncio.sleep(max(0.0, done_speaking - asyncio.get_running_loop().time()))
        try:
            await peer.wait_for("output_audio_buffer.stopped", timeout=30)
        except AssertionError:  # the reply's events did not make it (30 % loss): the mic audio still counts
            if not args.reply_optional:
                raise
            result["reply_missing"] = True
        await asyncio.sleep(args.hold)
        result["frames_sent"] = peer.mic.frames_sent
        result["events"] = [e["type"] for e in peer.events]
        result["heard_frames"] = len(peer.heard)
        result["red_sent"] = red is not None and red.red is not None
        result["nack_answered"] = "nack" in (peer.pc.remoteDescription.sdp if peer.pc.remoteDescription else "")
    finally:
        await peer.close()
        if listener is not None:
            with contextlib.suppress(Exception):
                result["heard_frames"] = await asyncio.wait_for(listener, 5)
        print(json.dumps(result), flush=True)


async def count_frames(source: RtpMicSource) -> int:
    count = 0
    with contextlib.suppress(Exception):
        while True:
            await source.recv()
            count += 1
    return count


if __name__ == "__main__":
    asyncio.run(main())
