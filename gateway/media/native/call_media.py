"""One call's RTP on the native path: what is taken from aiortc once DTLS is up, and given back.

:meth:`NativeCallMedia.start` needs a connected peer. From aiortc it reads the SRTP keying
material (exported again from the DTLS session, the way ``RTCDtlsTransport._setup_srtp`` does),
the nominated ICE pair (its UDP socket and the browser's address), the sender's SSRC, payload
type and header extension ids. Then:

- in: the pair's ``StunProtocol.datagram_received`` becomes a ``_pump.Receiver``: SRTP RTP is
  queued in C and drained once per batch (one ``call_soon`` per batch) through the mic's gate
  into :meth:`~gateway.media.audio_receiver.RtpMicSource.push_native`; STUN, DTLS, SRTCP and
  anything else go to aioice unchanged, so consent checks, DTLS alerts and RTCP (receiver
  reports, RTT, BYE) stay aiortc's. aiortc's own RTP session never sees another packet.
- out: the outbound track is handed to the loop's :class:`~gateway.media.native.pacer.Pacer`;
  each frame is one ``_pump.Sender.send`` (RTP header with mid and abs-send-time as aiortc
  writes them, libsrtp2 protect, ``sendto`` on the pair's socket). The counters aiortc's RTCP
  task puts in its sender reports are kept up to date.
- the browser's NACKs for those packets (RTCP, still aiortc's) go to the native sender, which
  resends the kept datagrams, bounded (:mod:`~gateway.media.native.nack_resend`).

A call it cannot take (a TURN relay pair, an unknown SRTP profile, aiortc internals that moved)
stays on the Python path: :meth:`start` returns why, and the outbound track is released to
aiortc's sender.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from aiortc import clock as aiortc_clock
from aiortc.rtcdtlstransport import RTCDtlsTransport

from ..audio_receiver import RtpMicSource
from ..outbound_audio import OutboundAudioTrack
from . import load
from .heap import CallHeap
from .nack_resend import answer_nacks
from .pacer import PacedStream, Pacer

logger = logging.getLogger(__name__)
SR_EVERY = 10  # packets between updates of the sender-report counters (aiortc sends an SR every 0.5–1.5 s)
STATS_EVERY_S = 0.1  # receiver-report statistics copied to aiortc at most this often (it sends an RR every 0.5–1.5 s)


def _no_statistics(ssrc: int) -> None:
    return None


def srtp_keys(dtls: RTCDtlsTransport) -> tuple[int, bytes, bytes]:
    """(libsrtp profile, inbound key+salt, outbound key+salt) of a connected DTLS transport."""
    ssl = dtls._ssl
    if ssl is None:
        raise ValueError("DTLS is not set up")
    selected = ssl.get_selected_srtp_profile()
    profile = next((p for p in dtls._srtp_profiles if p.openssl_profile == selected), None)
    if profile is None:
        raise ValueError(f"no SRTP profile negotiated ({selected!r})")
    view = ssl.export_keying_material(b"EXTRACTOR-dtls_srtp", 2 * (profile.key_length + profile.salt_length))
    server = dtls._role == "server"
    tx = profile.get_key_and_salt(view, 1 if server else 0)
    rx = profile.get_key_and_salt(view, 0 if server else 1)
    return profile.libsrtp_profile, rx, tx


def _extension_ids(sender: Any) -> tuple[int, int]:
    ids = sender._RTCRtpSender__rtp_header_extensions_map._HeaderExtensionsMap__ids
    return ids.mid or 0, ids.abs_send_time or 0


def _socket_of(pair: Any) -> tuple[Any, int] | str:
    """The asyncio transport and file descriptor a pair sends from, or why it cannot be used."""
    if pair is None:
        return "no nominated ICE pair"
    if pair.local_candidate.type == "relay" or type(pair.protocol).__name__ != "StunProtocol":
        return "the call runs through a TURN relay"
    transport = pair.protocol.transport
    if transport is None or transport.is_closing():
        return "the ICE socket is closed"
    return transport, transport.get_extra_info("socket").fileno()


class NativeCallMedia:
    def __init__(self, transceiver: Any, outbound: OutboundAudioTrack, *,
                 clock: Callable[[], float] = time.monotonic, pacer: Pacer | None = None,
                 heap: CallHeap | None = None, resend_nacks: bool = True) -> None:
        self._transceiver = transceiver
        self._outbound = outbound
        self._clock = clock
        self._pacer = pacer
        self._heap = heap
        self._heap_counted = False
        self._protocols: list[Any] = []
        self._receivers: list[Any] = []
        self._mic: RtpMicSource | None = None
        self._draining = False
        self._statistics_at = float("-inf")
        self._stream: PacedStream | None = None
        self._sender: Any = None
        self._aiortc_sender: Any = None
        self._connection: Any = None
        self._pair: Any = None
        self._transport: Any = None
        self._resend_nacks = resend_nacks
        self._undo_nacks: Callable[[], None] | None = None
        self.receiving = False
        self.sending = False

    def start(self, mic: RtpMicSource | None) -> str | None:
        """Take the call's RTP (``mic``: the receive path to feed; None leaves receiving to
        aiortc). Returns None, or why the call stays on the Python path."""
        pump = load()
        sender = self._transceiver.sender
        dtls: RTCDtlsTransport = sender.transport
        try:
            connection = dtls.transport._connection
            pair = connection._nominated.get(1)
            target = _socket_of(pair)
            if isinstance(target, str):
                return target
            transport, fd = target
            profile, rx_key, tx_key = srtp_keys(dtls)
            codec = self._transceiver._codecs[0]  # aiortc sends with the first negotiated codec
            mid_id, abs_id = _extension_ids(sender)
        except (AttributeError, KeyError, IndexError, ValueError, TypeError) as exc:
            return f"aiortc internals not as expected ({exc!r})"
        try:  # everything that can fail, before anything is taken from aiortc
            assert pair is not None
            host, port = pair.remote_addr
            # the first sequence number in the lower half, as aiortc's: an early wrap breaks some SRTP receivers
            native_sender = pump.Sender(pump.Session(profile, tx_key, True), fd, host, port, sender._ssrc,
                                        codec.payloadType, random.getrandbits(15), random.getrandbits(32),
                                        mid_id, self._transceiver.mid or "", abs_id)
            session = pump.Session(profile, rx_key, False) if mic is not None else None
        except ValueError as exc:  # e.g. a link-local address with a scope
            return f"cannot send natively ({exc})"
        self._aiortc_sender, self._sender = sender, native_sender
        self._connection, self._pair, self._transport = connection, pair, transport
        stream = self._stream = PacedStream(self._outbound, self._send, alive=self._alive)
        pacer = self._pacer = self._pacer if self._pacer is not None else Pacer(asyncio.get_running_loop())  # none shared: own
        self._outbound.hand_over(lambda: pacer.wake(stream))
        pacer.add(stream)
        self.sending = True
        if self._resend_nacks:
            self._undo_nacks = answer_nacks(sender, native_sender.resend)
        if mic is not None and session is not None:
            mic.take_native()
            self._mic = mic
            # Every local socket of the connection, not only the nominated pair's: a browser may
            # send from a pair of its own choosing (RFC 8445 lets it), and aioice accepts that.
            for protocol in connection._protocols:
                if type(protocol).__name__ != "StunProtocol":
                    continue
                receiver = pump.Receiver(session, protocol.datagram_received, self._batch_ready)
                protocol.datagram_received = receiver  # type: ignore[method-assign]  # aioice's answers the rest
                self._protocols.append(protocol)
                self._receivers.append(receiver)
            self.receiving = True
        # The call's set-up heap (peer connection, ICE, DTLS, SCTP, the call) is done: out of the
        # collector's reach, so a full collection mid-call does not walk it (see heap.py).
        heap = self._heap = self._heap if self._heap is not None else CallHeap(freeze=False)  # none shared: no freezing
        heap.call_started()
        self._heap_counted = True
        return None

    def _alive(self) -> bool:
        return not self._transport.is_closing()

    def _follow_pair(self, pair: Any) -> None:
        """aioice moved the connection to another pair (a later USE-CANDIDATE): send from that
        pair's socket, as aioice does, with the same numbering, SRTP session and NACK history."""
        target = _socket_of(pair)
        if isinstance(target, str):
            logger.info("ICE pair changed; the native path keeps sending on the old one (%s)", target)
            self._pair = pair
            return
        try:
            host, port = pair.remote_addr
            self._sender.retarget(target[1], host, port)
        except ValueError as exc:
            logger.info("ICE pair changed; the native path keeps sending on the old one (%s)", exc)
            self._pair = pair
            return
        self._pair, self._transport = pair, target[0]

    def _send(self, packet: Any, pts: int) -> None:
        pair = self._connection._nominated.get(1)
        if pair is not self._pair and pair is not None:
            self._follow_pair(pair)
        sender = self._sender
        sender.send(bytes(packet), pts, True)  # aiortc marks every audio packet (one payload a frame)
        if sender.packets % SR_EVERY == 1:
            ours = self._aiortc_sender
            ours._RTCRtpSender__ntp_timestamp = aiortc_clock.current_ntp_time()
            ours._RTCRtpSender__rtp_timestamp = sender.last_timestamp
            ours._RTCRtpSender__packet_count = sender.packets  # resends not counted, as aiortc's
            ours._RTCRtpSender__octet_count = sender.octets

    def _batch_ready(self) -> None:
        if not self._draining:
            self._draining = True
            asyncio.get_running_loop().call_soon(self._drain)

    def _drain(self) -> None:
        self._draining = False
        mic = self._mic
        if mic is None:
            return
        now = self._clock()
        fresh = now - self._statistics_at >= STATS_EVERY_S  # copying them is a dict and 7 setattrs a batch
        for receiver in self._receivers:
            if receiver.queued:
                packets = receiver.drain(mic.permits_ssrc, now)
                if packets:
                    mic.push_native(packets, receiver.statistics if fresh else _no_statistics)
        if fresh:
            self._statistics_at = now

    def counts(self) -> dict[str, int]:
        """What the native path did with the call's datagrams and frames (for logs and tests)."""
        counts: dict[str, int] = {}
        for receiver in self._receivers:
            for name, value in receiver.counts.items():
                counts[name] = counts.get(name, 0) + value
        sender = self._sender
        if sender is not None:
            counts |= {"sent": sender.packets, "send_dropped": sender.dropped, "resent": sender.resent,
                       "resent_bytes": sender.resent_bytes, "resend_unknown": sender.resend_unknown,
                       "resend_repeated": sender.resend_repeated, "resend_over_budget": sender.resend_over_budget}
        return counts

    def stop(self) -> None:
        """Give the socket's datagrams back to aioice and stop sending (idempotent)."""
        if self._stream is not None and self._pacer is not None:
            self._pacer.remove(self._stream)
            self._stream = None
        for protocol in self._protocols:
            try:
                del protocol.datagram_received  # the class's method again
            except AttributeError:
                pass
        self._protocols = []
        for receiver in self._receivers:
            receiver.close()
        if self._undo_nacks is not None:
            self._undo_nacks()
            self._undo_nacks = None
        if self._sender is not None:
            self._sender.close()
        self.receiving = self.sending = False
        if self._heap_counted and self._heap is not None:
            self._heap_counted = False
            self._heap.call_ended()
