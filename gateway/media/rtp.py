"""RTP pieces aiortc leaves out: extended sequence numbers, the one hook into a receiver's
packets, and the gate that decides which of a mic's packets are worth decrypting."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

SEQ_MOD = 1 << 16
MAX_PACKET_RATE = 200.0  # mic packets a second: Chromium sends 50, 10 ms packets would make 100
PACKET_BURST = 100.0  # packets that may come at once (a stalled path delivering its backlog)

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


class RtpGate:
    """Which mic packets reach the receive path: one stream at a time, a handful of new SSRCs
    per connection at most, no more packets a second than a sender could mean.

    A browser keeps one SSRC per track and changes it rarely (a renegotiation). A new SSRC
    becomes the stream once two packets in a row come from it — the old one is retired, its
    stragglers dropped — so a stray packet under another SSRC cannot take the stream over. Only
    ``max_ssrc_changes`` SSRCs besides the first are ever looked at: a sender churning SSRCs
    cannot make the gateway keep state (decoders, SRTP streams, statistics) per SSRC. Packets
    beyond ``max_rate`` a second, after a ``burst``, are dropped: a flood costs a header check
    each, not a decryption.

    :meth:`permits` is asked before a packet is decrypted (so it never switches streams);
    :meth:`follow` once it is authenticated. Sans-I/O: ``now`` is passed in.
    """

    def __init__(self, max_ssrc_changes: int, *, max_rate: float = MAX_PACKET_RATE,
                 burst: float = PACKET_BURST) -> None:
        self.max_ssrc_changes = max_ssrc_changes
        self.max_rate = max_rate
        self.burst = burst
        self.current: int | None = None
        self.known: set[int] = set()  # every SSRC looked at: at most max_ssrc_changes + 1
        self.retired: set[int] = set()
        self.changes = 0  # times the stream moved to a new SSRC
        self.refused_ssrc = 0  # packets of SSRCs not followed (retired, or past the limit)
        self.refused_rate = 0  # packets beyond max_rate
        self._candidate: int | None = None  # a new SSRC whose next packet would make it the stream
        self._tokens = burst
        self._at: float | None = None

    @property
    def exhausted(self) -> bool:
        """No further new SSRC will be looked at."""
        return len(self.known) > self.max_ssrc_changes

    def permits(self, ssrc: int, now: float) -> bool:
        """Whether a packet from ``ssrc`` may be decrypted and looked at."""
        if ssrc in self.retired or (ssrc not in self.known and self.exhausted):
            self.refused_ssrc += 1
            return False
        if self._at is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.max_rate)
        self._at = now
        if self._tokens < 1:
            self.refused_rate += 1
            return False
        self._tokens -= 1
        return True

    def follow(self, ssrc: int) -> bool:
        """An authenticated packet from ``ssrc``: True if it belongs to the mic's stream (which
        it may just have become)."""
        if ssrc == self.current:
            self._candidate = None
            return True
        if ssrc in self.retired or (ssrc not in self.known and self.exhausted):
            self.refused_ssrc += 1
            return False
        self.known.add(ssrc)
        if self.current is not None and self._candidate != ssrc:
            self._candidate = ssrc  # one packet is not a stream yet
            return False
        if self.current is not None:
            self.retired.add(self.current)
            self.changes += 1
        self.current, self._candidate = ssrc, None
        return True
