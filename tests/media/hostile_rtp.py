"""A browser stand-in whose RTP misbehaves, and a meter of what reached the upstream, when.

:class:`HostileRtp` sits between a :class:`~tests.peers.ClientPeer`'s RTP sender and its DTLS
transport: it rewrites each plaintext RTP header (sequence number, timestamp, SSRC) before
SRTP protects it, so the gateway receives properly encrypted, authenticated packets whose
numbering lies. Its ``mode`` can change while the call runs.
"""

from __future__ import annotations

import asyncio
import collections
import random
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiortc.rtp import is_rtcp

from tests.fake_upstream import FakeSession
from tests.peers import ClientPeer

SEQ_MOD = 1 << 16
TS_MOD = 1 << 32
STEP = 960  # 20 ms at 48 kHz

MODES = ("normal", "jump", "churn", "ssrc_flood", "flood", "duplicate", "long_packets", "silent")


class HostileRtp:
    """Misbehaving RTP from one client peer. Modes (one per packet the encoder makes):

    - ``normal``: one packet, sequence +1, timestamp +20 ms.
    - ``jump``: sequence +100 and timestamp +100 frames per packet (2 s of "lost" audio each).
    - ``churn``: a new SSRC (and new random numbering) every ``churn_every`` packets.
    - ``ssrc_flood``: each packet also sent under ``ssrc_flood`` further new SSRCs.
    - ``flood``: ``flood`` packets per packet, valid increasing sequence and timestamps.
    - ``duplicate``: each packet sent ``flood`` times unchanged.
    - ``long_packets``: the timestamp says 20 ms, the Opus packet holds 120 ms (six 20 ms frames).
    - ``silent``: nothing (RTCP and ICE carry on, the RTP clock runs on).
    """

    def __init__(self, peer: ClientPeer, *, seed: int = 13, flood: int = 10, churn_every: int = 3,
                 ssrc_flood: int = 40) -> None:
        transport = self._transport = peer.pc.getSenders()[0].transport
        self._send: Callable[[bytes], Awaitable[None]] = transport._send_rtp
        transport._send_rtp = self._tamper
        self._rng = random.Random(seed)
        self.mode = "normal"
        self.flood = flood
        self.churn_every = churn_every
        self.ssrc_flood = ssrc_flood
        self.ssrc = self._rng.getrandbits(32)
        self.seq = self._rng.getrandbits(16)
        self.ts = self._rng.getrandbits(32)
        self.ssrcs_used = {self.ssrc}
        self.sent: collections.Counter[str] = collections.Counter()  # packets put on the wire, by mode
        self._packets = 0
        self._frames: collections.deque[bytes] = collections.deque(maxlen=6)

    async def _tamper(self, data: bytes) -> None:
        if is_rtcp(data):
            await self._send(data)
            return
        mode = self.mode
        self._packets += 1
        header, payload = self._split(data)
        self._frames.append(payload)
        if mode == "silent":
            self.ts = (self.ts + STEP) % TS_MOD
            return
        if mode == "churn" and self._packets % self.churn_every == 0:
            self._new_ssrc()
        if mode == "jump":
            await self._put(header, payload, self.ssrc, seq_step=100, ts_step=100 * STEP)
        elif mode == "flood":
            for _ in range(self.flood):
                await self._put(header, payload, self.ssrc)
        elif mode == "duplicate":
            packet = self._packet(header, payload, self.ssrc)
            for _ in range(self.flood):
                await self._wire(packet)
            self._advance(1, STEP)
        elif mode == "long_packets":
            await self._put(header, _six_frames(list(self._frames)[-1:] * 6), self.ssrc)
        else:
            await self._put(header, payload, self.ssrc)
            if mode == "ssrc_flood":
                for _ in range(self.ssrc_flood):
                    ssrc = self._rng.getrandbits(32)
                    self.ssrcs_used.add(ssrc)
                    await self._wire(self._packet(header, payload, ssrc, seq=self._rng.getrandbits(16)))
                    self._forget(ssrc)

    @staticmethod
    def _split(data: bytes) -> tuple[bytearray, bytes]:
        """Header (with CSRCs and extensions) and payload of a plaintext RTP packet."""
        length = 12 + 4 * (data[0] & 0x0F)
        if data[0] & 0x10:
            words = struct.unpack_from("!H", data, length + 2)[0]
            length += 4 + 4 * words
        return bytearray(data[:length]), data[length:]

    def _packet(self, header: bytearray, payload: bytes, ssrc: int, *, seq: int | None = None) -> bytes:
        struct.pack_into("!HII", header, 2, self.seq if seq is None else seq, self.ts, ssrc)
        return bytes(header) + payload

    async def _put(self, header: bytearray, payload: bytes, ssrc: int, *, seq_step: int = 1,
                   ts_step: int = STEP) -> None:
        await self._wire(self._packet(header, payload, ssrc))
        self._advance(seq_step, ts_step)

    async def _wire(self, packet: bytes) -> None:
        self.sent[self.mode] += 1
        await self._send(packet)

    def _advance(self, seq_step: int, ts_step: int) -> None:
        self.seq = (self.seq + seq_step) % SEQ_MOD
        self.ts = (self.ts + ts_step) % TS_MOD

    def _forget(self, ssrc: int) -> None:
        """Drop our own SRTP state for a throwaway SSRC (libsrtp looks streams up in a list: the
        sender would slow down with every SSRC it keeps)."""
        self._transport._tx_srtp.remove_stream(ssrc)

    def _new_ssrc(self) -> None:
        if self._packets > 1:
            self._forget(self.ssrc)
        self.ssrc = self._rng.getrandbits(32)
        self.seq = self._rng.getrandbits(16)
        self.ts = self._rng.getrandbits(32)
        self.ssrcs_used.add(self.ssrc)


def _six_frames(frames: list[bytes]) -> bytes:
    """One Opus packet (RFC 6716 code 3, VBR) holding six 20 ms frames of the same mode."""
    toc = frames[0][0] & 0xFC | 0x3
    bodies = [frame[1:] for frame in frames]
    lengths = b"".join(_frame_length(len(body)) for body in bodies[:-1])
    return bytes([toc, 0x80 | len(bodies)]) + lengths + b"".join(bodies)


def _frame_length(n: int) -> bytes:
    return bytes([n]) if n < 252 else bytes([252 + (n - 252) % 4, (n - 252) // 4])


@dataclass
class Reading:
    at: float  # monotonic time of the reading
    seconds: float  # audio the session had received so far
    appends: int


class UpstreamMeter:
    """Samples, every 10 ms, how much mic audio one fake-upstream session has received."""

    def __init__(self, session: FakeSession, rate: int = 24000) -> None:
        self._session = session
        self._rate = rate
        self._counted = 0
        self._samples = 0
        self.readings: list[Reading] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> UpstreamMeter:
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            self.read()
            await asyncio.sleep(0.01)

    def read(self) -> Reading:
        audio = self._session.audio
        while self._counted < len(audio):
            self._samples += len(audio[self._counted])
            self._counted += 1
        reading = Reading(time.monotonic(), self._samples / self._rate, self._counted)
        self.readings.append(reading)
        return reading

    def at(self, when: float) -> Reading:
        """The last reading taken at or before ``when``."""
        best = self.readings[0]
        for reading in self.readings:
            if reading.at > when:
                break
            best = reading
        return best

    def seconds(self, start: float, end: float) -> float:
        return self.at(end).seconds - self.at(start).seconds

    def appends(self, start: float, end: float) -> int:
        return self.at(end).appends - self.at(start).appends

    def longest_stall(self, start: float, end: float) -> float:
        """Longest wall time within [start, end] without a new append."""
        times = [r.at for r, before in zip(self.readings[1:], self.readings, strict=False)
                 if r.appends > before.appends and start <= r.at <= end]
        return max((b - a for a, b in zip([start, *times], [*times, end], strict=False)), default=end - start)

    def first_append(self, after: float) -> float | None:
        """When the first append after ``after`` was seen."""
        previous = self.at(after).appends
        return next((r.at for r in self.readings if r.at > after and r.appends > previous), None)

    def worst_ratio(self, start: float, end: float, window: float) -> float:
        """Highest audio seconds per wall second over any ``window`` within [start, end]."""
        worst, t = 0.0, start
        while t + window <= end:
            worst = max(worst, self.seconds(t, t + window) / window)
            t += 0.1
        return worst

    def pcm(self, start: float, end: float) -> tuple[int, int]:
        """Sample indexes into the session's received audio for [start, end)."""
        return round(self.at(start).seconds * self._rate), round(self.at(end).seconds * self._rate)
