"""A plain Realtime WebSocket client for driving the local engine directly in tests and benches."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection, connect

from tests.peers import wait_for_event
from tests.schema import server_event_problem

RATE = 24000
FRAME = 480  # 20 ms


class EngineClient:
    def __init__(self, connection: ClientConnection) -> None:
        self.ws = connection
        self.events: list[dict[str, Any]] = []
        self.arrivals: list[float] = []
        self.schema_problems: list[str] = []
        self._arrived = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, url: str, key: str | None, **options: Any) -> EngineClient:
        """``key``: the engine's ``ENGINE_API_KEY``, sent as the gateway sends it (None: no header)."""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return cls(await connect(url, max_size=2**24, additional_headers=headers, **options))

    async def _read(self) -> None:
        async for message in self.ws:
            event = json.loads(message)
            problem = server_event_problem(event)
            if problem:
                self.schema_problems.append(problem)
            self.events.append(event)
            self.arrivals.append(time.monotonic())
            self._arrived.set()

    async def close(self) -> None:
        await self.ws.close()
        await asyncio.gather(self._reader, return_exceptions=True)
        assert not self.schema_problems, self.schema_problems

    async def send(self, event: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(event))

    async def append(self, pcm: np.ndarray, *, realtime: float = 0.0) -> float:
        """Stream ``pcm`` as 20 ms appends; ``realtime`` > 0 paces at that multiple of real time.
        Returns the monotonic time the last chunk was sent."""
        for start in range(0, len(pcm), FRAME):
            chunk = pcm[start:start + FRAME].astype(np.int16)
            await self.send({"type": "input_audio_buffer.append", "audio": base64.b64encode(chunk.tobytes()).decode()})
            if realtime:
                await asyncio.sleep(0.02 / realtime)
        return time.monotonic()

    async def paced(self, pcm: np.ndarray) -> float:
        """Stream ``pcm`` as 20 ms appends on a real-time schedule (as a microphone would: a
        late chunk does not push the later ones back). Returns when the last chunk was sent."""
        start = time.monotonic()
        for index, offset in enumerate(range(0, len(pcm), FRAME)):
            delay = start + index * FRAME / RATE - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.append(pcm[offset:offset + FRAME])
        return time.monotonic()

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    async def wait_for(self, kind: str, *, timeout: float = 30.0, after: int = 0,
                       where: Callable[[dict[str, Any]], bool] = lambda e: True) -> dict[str, Any]:
        """The first event of ``kind`` at index ≥ ``after`` matching ``where`` (as :class:`ClientPeer`'s)."""
        return await wait_for_event(self.events, self._arrived, kind, timeout=timeout, after=after, where=where)

    def reply_audio(self, response_id: str) -> np.ndarray:
        chunks = [np.frombuffer(base64.b64decode(e["delta"]), np.int16) for e in self.events
                  if e["type"] == "response.output_audio.delta" and e["response_id"] == response_id]
        return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)

    def playout_gaps(self, response_id: str) -> list[float]:
        """Seconds of silence a listener playing each delta as it arrives would hear between the
        reply's chunks (audio that arrived after the previous chunk had finished playing)."""
        gaps, playing_until = [], None
        for event, arrived in zip(self.events, self.arrivals, strict=True):
            if event["type"] != "response.output_audio.delta" or event["response_id"] != response_id:
                continue
            seconds = len(base64.b64decode(event["delta"])) / 2 / RATE
            if playing_until is None:
                playing_until = arrived
            gaps.append(max(0.0, arrived - playing_until))
            playing_until = max(playing_until, arrived) + seconds
        return gaps[1:]


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), np.int16)


def longest_quiet(pcm: np.ndarray, rate: int, *, level: int = 300, frame_s: float = 0.02) -> float:
    """The longest run of quiet ``frame_s`` frames (peak below ``level``) between the first and the
    last loud frame of ``pcm``, in seconds: a pause a listener hears inside it."""
    size = int(rate * frame_s)
    frames = len(pcm) // size
    if frames == 0:
        return 0.0
    loud = np.abs(pcm[:frames * size].reshape(frames, size).astype(np.int32)).max(axis=1) >= level
    indices = np.flatnonzero(loud)
    if len(indices) < 2:
        return 0.0
    return float((np.diff(indices).max() - 1) * frame_s)
