"""RTP pieces aiortc leaves out: extended sequence numbers, and the one hook into a receiver's packets."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

SEQ_MOD = 1 << 16

RtpHandler = Callable[[Any, int], Awaitable[None]]  # (aiortc RtpPacket, arrival ms)


def extend_sequence(seq: int, highest: int) -> int:
    """The 16-bit ``seq`` unwrapped next to ``highest`` (an extended number already seen)."""
    ext = highest - highest % SEQ_MOD + seq
    if ext - highest > SEQ_MOD // 2:
        ext -= SEQ_MOD
    elif highest - ext > SEQ_MOD // 2:
        ext += SEQ_MOD
    return ext


def replace_rtp_handler(receiver: Any, make: Callable[[RtpHandler], RtpHandler]) -> None:
    """Put ``make(aiortc's handler)`` in front of one receiver's RTP packets.

    ``RTCDtlsTransport`` calls ``receiver._handle_rtp_packet(packet, arrival_time_ms)`` by
    attribute lookup, so an instance attribute replaces it for this receiver only
    (``audio_receiver.check_aiortc_internals`` fails loudly if aiortc stops doing so).
    """
    receiver._handle_rtp_packet = make(receiver._handle_rtp_packet)
