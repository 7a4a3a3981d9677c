"""Two plain aiortc peers that hum at each other, to prove a real WebRTC call crosses the bed.

``python -m tests.netbed.tone_peer answer --host ADDR --hz 660`` serves ``POST /offer`` (JSON SDP,
like any HTTP signaling) on ADDR, prints ``{"url": …}``, answers one call with a 660 Hz tone and,
on SIGTERM, prints what it heard as JSON. :func:`call` is the offering side: it posts the offer,
hums its own tone, listens for ``seconds`` and returns what it heard; ``python -m … offer --url``
runs it as a program. What they hear is summarised in 0.2 s blocks (arrival time of the
block's first frame, pitch, level) so a test can see gaps, recovery and that the pitch is right.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import numpy as np
from aiohttp import web
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame

from tests.peers import FRAME, RATE, MicTrack

BLOCK = 10  # frames per summary block: 0.2 s, so pitch is resolved to 5 Hz (both tones fall on a bin)


class ToneTrack(MicTrack):
    """A sine at ``hz``: a :class:`~tests.peers.MicTrack` (real-time pacing, 20 ms frames) that is
    given the tone's next frame to say before each one it sends."""

    def __init__(self, hz: float) -> None:
        super().__init__()
        self._hz = hz
        self._samples = 0  # of the tone queued so far: its phase runs on across frames

    async def recv(self) -> AudioFrame:
        t = (self._samples + np.arange(FRAME)) / RATE
        self._samples += FRAME
        self.say((8000 * np.sin(2 * np.pi * self._hz * t)).astype(np.int16))
        frame = await super().recv()
        assert isinstance(frame, AudioFrame)
        return frame


class Listener:
    """Collects a remote audio track as (arrival time, mono samples) per frame."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []
        self.frames: list[np.ndarray] = []

    async def consume(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            assert isinstance(frame, AudioFrame)
            samples = frame.to_ndarray().reshape(-1, len(frame.layout.channels)).mean(axis=1)
            self.arrivals.append(time.monotonic())
            self.frames.append(samples)

    def summary(self) -> dict[str, Any]:
        blocks = []
        for start in range(0, len(self.frames) - BLOCK + 1, BLOCK):
            audio = np.concatenate(self.frames[start:start + BLOCK])
            spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
            blocks.append({"t": self.arrivals[start], "hz": float(np.argmax(spectrum) * RATE / len(audio)),
                           "rms": float(np.sqrt(np.mean(audio ** 2)))})
        return {"frames": len(self.frames), "arrivals": self.arrivals, "blocks": blocks}


async def _round_trip(pc: RTCPeerConnection) -> float | None:
    for sender in pc.getSenders():
        for stats in (await sender.getStats()).values():
            if stats.type == "remote-inbound-rtp":
                return float(stats.roundTripTime)
    return None


async def call(url: str, hz: float, seconds: float, on_connected: Callable[[float], None] | None = None) -> dict[str, Any]:
    """Offer a call to ``url``, hum at ``hz`` and listen for ``seconds`` after connecting."""
    pc = RTCPeerConnection()
    listener = Listener()
    listening: list[asyncio.Task[None]] = []
    pc.on("track", lambda track: listening.append(asyncio.ensure_future(listener.consume(track))))
    connected = asyncio.Event()

    @pc.on("connectionstatechange")
    def changed() -> None:
        if pc.connectionState == "connected":
            connected.set()

    pc.addTrack(ToneTrack(hz))
    try:
        await pc.setLocalDescription(await pc.createOffer())
        async with aiohttp.ClientSession() as session:
            async with session.post(url, json={"sdp": pc.localDescription.sdp, "type": "offer"}) as response:
                response.raise_for_status()
                answer = await response.json()
        await pc.setRemoteDescription(RTCSessionDescription(**answer))
        await asyncio.wait_for(connected.wait(), 20)
        if on_connected is not None:
            on_connected(time.monotonic())
        await asyncio.sleep(seconds)
        return {**listener.summary(), "rtt": await _round_trip(pc)}
    finally:
        await pc.close()
        for task in listening:
            task.cancel()
        await asyncio.gather(*listening, return_exceptions=True)


async def answer(host: str, hz: float) -> None:
    """Serve one call at a time until SIGTERM, then print what was heard."""
    peers: set[RTCPeerConnection] = set()
    listener = Listener()
    listening: list[asyncio.Task[None]] = []

    async def offer(request: web.Request) -> web.Response:
        description = RTCSessionDescription(**await request.json())
        pc = RTCPeerConnection()
        peers.add(pc)
        pc.on("track", lambda track: listening.append(asyncio.ensure_future(listener.consume(track))))
        await pc.setRemoteDescription(description)
        pc.addTrack(ToneTrack(hz))
        await pc.setLocalDescription(await pc.createAnswer())
        return web.json_response({"sdp": pc.localDescription.sdp, "type": "answer"})

    app = web.Application()
    app.router.add_post("/offer", offer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print(json.dumps({"url": f"http://{host}:{runner.addresses[0][1]}/offer"}), flush=True)
    await stop.wait()
    rtts = [await _round_trip(pc) for pc in peers]
    print(json.dumps({**listener.summary(), "rtt": next((r for r in rtts if r is not None), None)}), flush=True)
    for pc in peers:
        await pc.close()
    for task in listening:
        task.cancel()
    await asyncio.gather(*listening, return_exceptions=True)
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["answer", "offer"])
    parser.add_argument("--host", help="answer: the address to serve on")
    parser.add_argument("--url", help="offer: the answerer's /offer URL")
    parser.add_argument("--hz", type=float, default=440)
    parser.add_argument("--seconds", type=float, default=5)
    args = parser.parse_args()
    if args.role == "answer":
        asyncio.run(answer(args.host, args.hz))
    else:
        print(json.dumps(asyncio.run(call(args.url, args.hz, args.seconds))), flush=True)


if __name__ == "__main__":
    main()
