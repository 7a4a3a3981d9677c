"""The browser's NACKs for the gateway's own audio: answered on the native path, bounded on both.

The gateway answers ``a=rtcp-fb:<opus> nack`` (``MIC_NACK_BROWSERS``, :mod:`gateway.webrtc.nack_sdp`),
so Chromium's receiver asks again for the packets of the model's voice it lost. On the Python
path aiortc's ``RTCRtpSender`` resends them from its RTP history; on the native path that sender
sends nothing, so its history is empty. :func:`answer_nacks` routes the call's NACKs to the native
``_pump.Sender`` instead, which keeps the last second of protected datagrams and resends them,
bounded: each at most twice and not twice within a round trip, all within half the stream's
bytes (``Sender_resend`` in ``_pump.c``). Resends are not counted in the sender reports' packet
and octet counts; aiortc's own are not either.

aiortc's own resends (the Python path, or a call the native path did not take) have no bound: a
peer that NACKs the last 50 packets every 20 ms got 36× the stream's bytes back (measured).
:func:`bound_aiortc_resends` puts the same bounds in front of them.

It relies on aiortc 1.16 internals, checked once by :func:`check_nack_internals`: the DTLS
transport hands each routed RTCP packet to the sender's ``_handle_rtcp_packet``, looked up on the
instance (so one per call can be put in front), and the sender handles NACK feedback there.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from functools import cache
from typing import Any

from aiortc import rtp
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtp import RTP_HISTORY_SIZE

logger = logging.getLogger(__name__)


class NackInternalsError(RuntimeError):
    """aiortc no longer hands NACKs to its sender the way :func:`answer_nacks` expects."""


@cache
def check_nack_internals() -> None:
    problems = []
    if "_handle_rtcp_packet" not in RTCDtlsTransport._handle_rtcp_data.__code__.co_names:
        problems.append("RTCDtlsTransport._handle_rtcp_data no longer calls _handle_rtcp_packet")
    names = RTCRtpSender._handle_rtcp_packet.__code__.co_names
    if not {"RtcpRtpfbPacket", "RTCP_RTPFB_NACK", "_retransmit"} <= set(names):
        problems.append("RTCRtpSender._handle_rtcp_packet no longer retransmits on RtcpRtpfbPacket NACK")
    if "_RTCRtpSender__rtt" not in names:
        problems.append("RTCRtpSender._handle_rtcp_packet no longer keeps __rtt")
    if "lost" not in getattr(rtp.RtcpRtpfbPacket, "__dataclass_fields__", {}):
        problems.append("RtcpRtpfbPacket has no lost list")
    if not {"_RTCRtpSender__rtp_history", "_RTCRtpSender__octet_count"} <= set(RTCRtpSender._run_rtp.__code__.co_names):
        problems.append("RTCRtpSender._run_rtp no longer keeps __rtp_history and __octet_count")
    if problems:
        raise NackInternalsError(f"aiortc changed ({'; '.join(problems)}): written for aiortc==1.16.0")


Resend = Callable[[list[int], float], object]  # (lost sequence numbers, spacing: the round trip, s)
PER_PACKET = 2  # the native sender's bounds (_pump.c: RESENDS_PER_PACKET, RESEND_SHARE, RESEND_BURST)
SHARE = 2
BURST = 8192


class ResendBudget:
    """Which of aiortc's kept packets may go out again: each at most ``per_packet`` times and not
    again within ``spacing`` seconds, all within 1/``share`` of the payload bytes sent, the unused
    budget saved up to ``burst`` bytes."""

    def __init__(self, per_packet: int = PER_PACKET, share: int = SHARE, burst: int = BURST) -> None:
        self._per_packet, self._share, self._burst = per_packet, share, burst
        self._resends: dict[int, tuple[int, int, int, float]] = {}  # slot → (seq, timestamp, resends, last at)
        self._tokens = 0.0
        self._sent = 0

    def allow(self, seq: int, timestamp: int, size: int, sent: int, now: float, spacing: float = 0.0) -> bool:
        """``sent``: payload bytes sent so far (the sender's octet count); ``size``: this packet's."""
        self._tokens = min(self._burst, self._tokens + (sent - self._sent) / self._share)
        self._sent = sent
        slot = seq % RTP_HISTORY_SIZE
        kept_seq, kept_timestamp, resends, last = self._resends.get(slot, (seq, timestamp, 0, now))
        if (kept_seq, kept_timestamp) != (seq, timestamp):  # a newer packet in that slot
            resends = 0
        if resends >= self._per_packet or (resends and now - last < spacing) or self._tokens < size:
            return False
        self._tokens -= size
        self._resends[slot] = (seq, timestamp, resends + 1, now)
        return True


def round_trip(sender: Any) -> float:
    """aiortc's estimate of the round trip to the browser (from its receiver reports), 0 before one."""
    rtt: float | None = sender._RTCRtpSender__rtt
    return rtt or 0.0


def _nack_for(packet: Any, ssrc: int) -> bool:
    """Whether an RTCP packet is a generic NACK (RFC 4585) for the stream ``ssrc``."""
    return isinstance(packet, rtp.RtcpRtpfbPacket) and packet.fmt == rtp.RTCP_RTPFB_NACK and packet.media_ssrc == ssrc


def bound_aiortc_resends(sender: Any) -> bool:
    """Put :class:`ResendBudget` in front of aiortc's ``sender``'s resends for NACKs (of any path:
    on the native one :func:`answer_nacks` comes in front of this). False (logged) if aiortc's
    internals moved: its resends stay as they are."""
    try:
        check_nack_internals()
    except NackInternalsError as exc:
        logger.warning("aiortc's resends for NACKs are not bounded: %s", exc)
        return False
    handle: Callable[[Any], Awaitable[None]] = sender._handle_rtcp_packet
    history: dict[int, Any] = sender._RTCRtpSender__rtp_history
    budget, ssrc = ResendBudget(), sender._ssrc

    async def handle_rtcp(packet: Any) -> None:
        if not _nack_for(packet, ssrc):
            await handle(packet)
            return
        for lost in packet.lost:
            seq = lost & 0xFFFF  # aiortc's parse does not wrap a bitmask past 65535
            kept = history.get(seq % RTP_HISTORY_SIZE)
            if kept is not None and kept.sequence_number == seq and budget.allow(
                    seq, kept.timestamp, len(kept.payload), sender._RTCRtpSender__octet_count, time.monotonic(),
                    round_trip(sender)):
                await sender._retransmit(seq)

    sender._handle_rtcp_packet = handle_rtcp
    return True


def answer_nacks(sender: Any, resend: Resend) -> Callable[[], None] | None:
    """Put ``resend(lost, round trip)`` in front of aiortc's ``sender`` for NACKs of its SSRC (everything else
    still reaches aiortc). Returns the undo, or None (logged) if aiortc's internals moved: the call
    then keeps the native path without resends."""
    try:
        check_nack_internals()
    except NackInternalsError as exc:
        logger.warning("NACKs for the gateway's audio go unanswered on the native path: %s", exc)
        return None
    handle: Callable[[Any], Awaitable[None]] = sender._handle_rtcp_packet
    before = sender.__dict__.get("_handle_rtcp_packet")  # bound_aiortc_resends' (or None: the class's)
    ssrc = sender._ssrc

    async def handle_rtcp(packet: Any) -> None:
        if _nack_for(packet, ssrc):
            resend(packet.lost, round_trip(sender))
        else:
            await handle(packet)

    sender._handle_rtcp_packet = handle_rtcp

    def undo() -> None:
        if sender.__dict__.get("_handle_rtcp_packet") is not handle_rtcp:
            return
        if before is None:
            del sender._handle_rtcp_packet
        else:
            sender._handle_rtcp_packet = before

    return undo
