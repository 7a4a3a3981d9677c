"""Runs inside the bed's client namespace: one call that says a WAV, the way Chrome sends it
(Opus with in-band FEC), waits for the answer, and prints what it saw as JSON."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np

from gateway.media.outbound_codec import OpusPacketizer
from gateway.media.resample import Upsampler
from tests.audio_tools import read_wav
from tests.peers import ClientPeer


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--wav", type=Path, action="append", required=True, help="said in order, 1.5 s apart")
    parser.add_argument("--expected-loss", type=int, default=10)
    parser.add_argument("--hold", type=float, default=3.0, help="seconds to stay after the reply")
    args = parser.parse_args()
    gap = np.zeros(24000 * 3 // 2, np.int16)
    pieces = [gap]
    for path in args.wav:
        speech, rate = read_wav(path)
        assert rate == 24000
        pieces += [speech, gap]
    packetizer = OpusPacketizer()
    packetizer.encoder.set_packet_loss_perc(args.expected_loss)  # what Chrome does from our reports
    peer = ClientPeer(args.url, packetize=packetizer)
    result: dict[str, Any] = {}
    try:
        await peer.connect()
        await peer.channel_open(timeout=20)
        await peer.wait_for("session.created", timeout=20)
        done_speaking = peer.mic.say(Upsampler().process(np.concatenate(pieces)))
        await asyncio.sleep(max(0.0, done_speaking - asyncio.get_running_loop().time()))
        await peer.wait_for("output_audio_buffer.stopped", timeout=30)
        await asyncio.sleep(args.hold)
        result["frames_sent"] = peer.mic.frames_sent
        result["events"] = [e["type"] for e in peer.events]
        result["heard_frames"] = len(peer.heard)
    finally:
        await peer.close()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
