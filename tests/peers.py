"""A browser stand-in built from a real aiortc peer: it talks into a mic, listens, and logs events.

It connects exactly the way the web page does — mint a client secret, create a data channel
``oai-events``, POST the offer to ``/v1/realtime/calls`` — so tests exercise the public interface.
"""

from __future__ import annotations

import asyncio
import fractions
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import numpy as np
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcconfiguration import RTCIceTransportPolicy
from av import AudioFrame

from gateway.media.inbound_audio import mono

from .schema import server_event_problem

RATE = 48000
FRAME = 960


async def wait_for_event(events: list[dict[str, Any]], arrived: asyncio.Event, kind: str, *, timeout: float,
                         after: int = 0, where: Callable[[dict[str, Any]], bool] = lambda e: True) -> dict[str, Any]:
    """The first event of ``kind`` in ``events[after:]`` matching ``where``, waiting up to ``timeout``
    seconds for it (``arrived`` is set by whoever appends to ``events``); fails the test with the
    types that did arrive. Shared by :class:`ClientPeer` and the engine tests' WebSocket client."""
    deadline = time.monotonic() + timeout
    while True:
        for event in events[after:]:
            if event.get("type") == kind and where(event):
                return event
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            seen = [e.get("type") for e in events[after:]]
            raise AssertionError(f"no {kind} within {timeout} s; saw {seen}")
        arrived.clear()
        try:
            await asyncio.wait_for(arrived.wait(), remaining)
        except TimeoutError:
            pass


class MicTrack(MediaStreamTrack):
    """Plays queued 48 kHz PCM in real time, silence otherwise.

    With a ``packetize`` (e.g. :class:`gateway.media.outbound_codec.OpusPacketizer`) it sends Opus with
    in-band FEC, the way Chrome does once the answer asks for it; by default aiortc encodes.
    """

    kind = "audio"

    def __init__(self, packetize: Callable[[np.ndarray, int], Any] | None = None) -> None:
        super().__init__()
        self._packetize = packetize
        self._queue = np.zeros(0, np.int16)
        self._start: float | None = None
        self._pts = 0
        self.sent_until = 0.0  # monotonic time when the last queued sample leaves
        self.frames_sent = 0

    def say(self, pcm: np.ndarray) -> float:
        """Queue speech; returns the monotonic time at which it will have been fully sent."""
        self._queue = np.concatenate((self._queue, pcm.astype(np.int16)))
        self.sent_until = time.monotonic() + len(self._queue) / RATE
        return self.sent_until

    async def recv(self) -> Any:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            self._pts += FRAME
            wait = self._start + self._pts / RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        pcm, self._queue = self._queue[:FRAME], self._queue[FRAME:]
        self.frames_sent += 1
        if len(pcm) < FRAME:
            pcm = np.concatenate((pcm, np.zeros(FRAME - len(pcm), np.int16)))
        if self._packetize is not None:
            return self._packetize(pcm, self._pts)
        frame = AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, RATE)
        return frame


class TrackListener:
    """What a peer hears: every frame of a received audio track, as 20 ms of mono PCM with its
    arrival time, until the track ends."""

    def __init__(self) -> None:
        self.heard: list[tuple[float, np.ndarray]] = []  # (arrival monotonic time, 20 ms mono frame)
        self._task: asyncio.Task[None] | None = None

    def listen(self, track: MediaStreamTrack) -> None:
        """Record ``track`` (a peer connection's ``track`` handler); only the first audio track."""
        if track.kind == "audio" and self._task is None:
            self._task = asyncio.create_task(self._listen(track))

    async def _listen(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                self.heard.append((time.monotonic(), mono(frame).copy()))
        except MediaStreamError:
            pass

    def between(self, start: float, end: float = float("inf")) -> np.ndarray:
        """What arrived from ``start`` until ``end`` (monotonic times), as one PCM array."""
        frames = [pcm for when, pcm in self.heard if start <= when < end]
        return np.concatenate(frames) if frames else np.zeros(0, np.int16)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


class ClientPeer:
    def __init__(self, base_url: str, *, configuration: RTCConfiguration | None = None,
                 packetize: Callable[[np.ndarray, int], Any] | None = None, relay_only: bool = False) -> None:
        """``relay_only``: use the client secret's ``ice_servers`` with iceTransportPolicy relay."""
        self.base_url = base_url
        self._configuration = configuration
        self._relay_only = relay_only
        self.mic = MicTrack(packetize)
        self.ears = TrackListener()
        self.pc = RTCPeerConnection(configuration or RTCConfiguration())
        self._setup_pc()
        self.events: list[dict[str, Any]] = []
        self.schema_problems: list[str] = []  # every event is checked against openai's GA types
        self.location: str | None = None
        self.resume_token: str | None = None
        self.secret: dict[str, Any] | None = None
        self._event_arrived = asyncio.Event()

    def _setup_pc(self) -> None:
        self.pc.addTrack(self.mic)
        self.channel = self.pc.createDataChannel("oai-events")
        self.channel.on("message", self._on_message)
        self.pc.on("track", self.ears.listen)

    # --- signaling ---------------------------------------------------------------------------

    async def connect(self, session: dict[str, Any] | None = None, mint_headers: dict[str, str] | None = None) -> None:
        """``mint_headers``: e.g. the gateway API key an embedder's backend would mint with."""
        async with aiohttp.ClientSession() as http:
            body = {"session": session} if session else {}
            async with http.post(f"{self.base_url}/v1/realtime/client_secrets", json=body,
                                 headers=mint_headers or {}) as response:
                assert response.status == 200, await response.text()
                self.secret = await response.json()
            if self._relay_only:  # like a browser behind a strict firewall: TURN or nothing
                await self.pc.close()
                self.mic = MicTrack(self.mic._packetize)
                servers = [RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
                           for s in self.secret["ice_servers"]]
                self.pc = RTCPeerConnection(RTCConfiguration(iceServers=servers,
                                                             iceTransportPolicy=RTCIceTransportPolicy.RELAY))
                self._setup_pc()
            await self.pc.setLocalDescription(await self.pc.createOffer())
            async with http.post(f"{self.base_url}/v1/realtime/calls", data=self.pc.localDescription.sdp,
                                 headers={"Content-Type": "application/sdp",
                                          "Authorization": f"Bearer {self.secret['value']}"}) as response:
                answer = await response.text()
                assert response.status == 201, answer
                self.location = response.headers["Location"]
                self.resume_token = response.headers.get("X-Resume-Token")
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

    async def resume(self, token: str) -> int:
        """Bring an existing call back on this (new) peer, as a browser does after a network
        change; returns the HTTP status."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{self.base_url}/v1/realtime/calls", data=self.pc.localDescription.sdp,
                                 headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"}) as r:
                if r.status != 201:
                    return r.status
                answer = await r.text()
                self.location = r.headers["Location"]
                self.resume_token = r.headers["X-Resume-Token"]
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        return 201

    async def hang_up(self) -> int:
        async with aiohttp.ClientSession() as http:
            async with http.delete(f"{self.base_url}{self.location}") as response:
                return response.status

    async def close(self) -> None:
        """Close the peer and fail the test if any event broke the GA schema."""
        await self.pc.close()
        await self.ears.stop()
        assert not self.schema_problems, f"events not valid per openai's GA types: {self.schema_problems}"

    # --- events ------------------------------------------------------------------------------

    def _on_message(self, message: str) -> None:
        event = json.loads(message)
        problem = server_event_problem(event)
        if problem is not None:
            self.schema_problems.append(problem)
        self.events.append(event)
        self._event_arrived.set()

    def send(self, event: dict[str, Any]) -> None:
        self.channel.send(json.dumps(event))

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == kind]

    async def wait_for(self, kind: str, *, timeout: float = 10.0, after: int = 0,
                       where: Callable[[dict[str, Any]], bool] = lambda e: True) -> dict[str, Any]:
        """The first event of ``kind`` at index ≥ ``after`` matching ``where``."""
        return await wait_for_event(self.events, self._event_arrived, kind, timeout=timeout, after=after, where=where)

    async def channel_open(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.channel.readyState != "open":
            assert time.monotonic() < deadline, "data channel did not open"
            await asyncio.sleep(0.02)

    # --- audio -------------------------------------------------------------------------------

    @property
    def heard(self) -> list[tuple[float, np.ndarray]]:
        """(arrival monotonic time, 20 ms mono frame) of everything the gateway sent."""
        return self.ears.heard

    def heard_between(self, start: float, end: float = float("inf")) -> np.ndarray:
        return self.ears.between(start, end)
