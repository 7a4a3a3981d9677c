"""RFC 2198 redundant audio (RED) for Opus: each packet also carries the previous frames, whole.

Chromium offers ``a=rtpmap:63 red/48000/2`` with ``a=fmtp:63 111/111``: a RED packet is a list
of blocks, the oldest first, each an Opus frame as it was sent before, then the primary (this
packet's own frame). A lost packet's frame comes back from the next packet at full quality,
where Opus's in-band FEC only has a low-bitrate copy and concealment has nothing.

Wire format (RFC 2198 §3): a 4-byte header per redundant block — F=1, block payload type (7
bits), timestamp offset (14 bits, ticks before the packet's timestamp), block length (10 bits) —
then a 1-byte header for the primary (F=0, payload type), then the blocks' data in that order.

Sans-I/O: :func:`unpack` and :func:`pack` are pure; :class:`RedEncoder` keeps the last frames
for the send side and :class:`RedPolicy` picks the redundancy distance (0, 1 or 2 earlier frames)
from the loss the browser reports, within a bitrate budget meant for mobile links.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any, NamedTuple

MAX_OFFSET = (1 << 14) - 1  # ticks: 341 ms at 48 kHz
MAX_BLOCK = (1 << 10) - 1  # bytes
MAX_DISTANCE = 2  # earlier frames a packet repeats, at most


class RedError(ValueError):
    """Not a well-formed RFC 2198 payload."""


class RedBlock(NamedTuple):
    payload_type: int
    timestamp_offset: int  # ticks before the RTP packet's timestamp (0 for the primary)
    payload: bytes


def unpack(payload: bytes) -> list[RedBlock]:
    """The blocks of a RED payload, the oldest first, the primary last."""
    headers: list[tuple[int, int, int]] = []
    position = 0
    while True:
        if position >= len(payload):
            raise RedError("RED payload ends inside its headers")
        first = payload[position]
        if not first & 0x80:  # the primary's one-byte header ends the list
            primary_type = first & 0x7F
            position += 1
            break
        if position + 4 > len(payload):
            raise RedError("RED block header cut short")
        word = int.from_bytes(payload[position + 1:position + 4], "big")
        headers.append((first & 0x7F, word >> 10, word & 0x3FF))
        position += 4
    blocks: list[RedBlock] = []
    for payload_type, offset, length in headers:
        if position + length > len(payload):
            raise RedError("RED block longer than the payload")
        blocks.append(RedBlock(payload_type, offset, payload[position:position + length]))
        position += length
    blocks.append(RedBlock(primary_type, 0, payload[position:]))
    return blocks


def pack(primary_type: int, primary: bytes, redundant: list[RedBlock]) -> bytes:
    """A RED payload: ``redundant`` (oldest first) then ``primary``. Blocks that RFC 2198 cannot
    describe (offset ≥ 2^14 ticks, ≥ 1024 bytes) are left out."""
    fitting = [b for b in redundant if 0 < b.timestamp_offset <= MAX_OFFSET and len(b.payload) <= MAX_BLOCK]
    header = bytearray()
    for block in fitting:
        header.append(0x80 | (block.payload_type & 0x7F))
        header += ((block.timestamp_offset << 10) | len(block.payload)).to_bytes(3, "big")
    header.append(primary_type & 0x7F)
    return bytes(header) + b"".join(b.payload for b in fitting) + primary


class Frame(NamedTuple):
    sequence: int  # 16-bit RTP sequence number this frame had (or would have had) on its own
    timestamp: int
    payload: bytes
    redundant: bool  # a copy carried by a later packet


def frames(payload: bytes, sequence: int, timestamp: int, media_type: int, step: int) -> list[Frame]:
    """The ``media_type`` frames in a RED packet, each with the sequence number it had when sent
    alone: the sender sends one frame per packet, so a block ``k * step`` ticks old is packet
    ``sequence - k``. Blocks of other payload types, empty blocks and offsets that are not a whole
    number of frames (up to :data:`MAX_DISTANCE`) are skipped. Raises :class:`RedError`."""
    out: list[Frame] = []
    for block in unpack(payload):
        if block.payload_type != media_type or not block.payload:
            continue
        if block.timestamp_offset == 0:
            out.append(Frame(sequence, timestamp, block.payload, False))
            continue
        back, rest = divmod(block.timestamp_offset, step)
        if rest or not 0 < back <= MAX_DISTANCE:
            continue
        out.append(Frame((sequence - back) & 0xFFFF, (timestamp - block.timestamp_offset) & 0xFFFFFFFF,
                         block.payload, True))
    return out


class RedEncoder:
    """The send side: wraps each Opus payload with the ``distance`` frames sent before it."""

    def __init__(self, media_type: int, distance: int = 1) -> None:
        self.media_type = media_type
        self.distance = distance
        self._history: collections.deque[tuple[int, bytes]] = collections.deque(maxlen=MAX_DISTANCE)
        self.redundant_bytes = 0  # payload bytes spent on redundancy (for stats)

    def wrap(self, payload: bytes, timestamp: int) -> bytes:
        """``payload`` (this frame, RTP ``timestamp``) as a RED payload."""
        earlier = list(self._history)[-self.distance:] if self.distance else []
        blocks = [RedBlock(self.media_type, (timestamp - ts) & 0xFFFFFFFF, data) for ts, data in earlier]
        self._history.append((timestamp, payload))
        red = pack(self.media_type, payload, blocks)
        self.redundant_bytes += len(red) - len(payload)
        return red


@dataclass(frozen=True)
class RedChoice:
    distance: int  # earlier frames each packet repeats
    opus_bitrate: int  # what the encoder gets, so primary + copies stay within the budget


class RedPolicy:
    """Redundancy from RTCP ``fraction lost`` (0–255 per report interval), rising at once and
    decaying slowly like the FEC estimator. Distance 1 from the start (the first loss already
    finds a copy), 2 from ``two_at`` % loss; 0 only after a long clean stretch (< ``off_below`` %).
    Bitrate: ``budget`` bps for the primary and its copies together, never more than ``max_bitrate``
    for the primary: a mobile uplink carries 64 kbps of audio, and Opus speech at 21 kbps
    super-wideband still sounds fine. Sans-I/O."""

    def __init__(self, *, budget: int = 64000, max_bitrate: int = 32000, off_below: float = 0.5,
                 two_at: float = 8.0) -> None:
        self.budget = budget
        self.max_bitrate = max_bitrate
        self.off_below = off_below
        self.two_at = two_at
        self.percent = two_at / 2  # until the first report: distance 1
        self.choice = self._choose()

    def update(self, fraction_lost: int) -> RedChoice:
        observed = fraction_lost * 100 / 256
        self.percent = observed if observed > self.percent else 0.8 * self.percent + 0.2 * observed
        self.choice = self._choose()
        return self.choice

    def _choose(self) -> RedChoice:
        distance = 0 if self.percent < self.off_below else 2 if self.percent >= self.two_at else 1
        return RedChoice(distance, min(self.max_bitrate, self.budget // (1 + distance)))


def media_type(fmtp: dict[str, object]) -> int | None:
    """The payload type a RED codec's fmtp (``{"111/111": None}`` as aiortc parses it) repeats."""
    for key in fmtp:
        blocks = str(key).split("/")
        if blocks and all(b.isdigit() and b == blocks[0] for b in blocks):
            return int(blocks[0])
    return None


STEP = 960  # ticks per frame: the answer asks for 20 ms packets (opus_sdp.PTIME_MS)


def split_packet(packet: Any, fmtp: dict[str, object]) -> tuple[Any, list[Frame]] | None:
    """A received RED RTP packet (``payload``, ``sequence_number``, ``timestamp``) → the same
    packet holding only its primary Opus frame, and the earlier frames it carried; None for a
    malformed one or one without a primary."""
    inner = media_type(fmtp)
    if inner is None:
        return None
    try:
        found = frames(packet.payload, packet.sequence_number, packet.timestamp, inner, STEP)
    except RedError:
        return None
    primary = next((f for f in found if not f.redundant), None)
    if primary is None:
        return None
    packet.payload = primary.payload
    packet.payload_type = inner
    return packet, [f for f in found if f.redundant]
