"""Retransmission timers for a voice call's set-up on a lossy link, per connection.

aiortc keeps TCP-era defaults: its DTLS handshake retransmits on OpenSSL's timer (1 s, doubling),
its SCTP association starts with RTO 3 s (INIT, COOKIE-ECHO, then the data channel's first
messages) and never goes below 1 s. At 20 % loss one lost packet of the ~8 the set-up needs
each way is likely, so a call spent seconds waiting for timers: POST → data channel open took
8.2 s while ICE had connected in 1.9 s. What :func:`tune_transport_timers` changes, for one
peer connection only (aiortc's classes and module constants stay as they are):

- **DTLS**: OpenSSL's timer cannot be set through pyOpenSSL, so :class:`DtlsFlightResender`
  sends our last handshake flight again, byte for byte, when no new flight followed it within
  ``dtls_initial`` s (0.25 s, doubling to ``dtls_max``), until the handshake is over — and, when
  we sent the last flight of the handshake, until the peer's first application data shows it
  arrived. A copy that arrives after the original is discarded by the peer's DTLS replay check
  (so it cannot prompt the peer to repeat its own flight: a lost reply is the peer's resender's
  to repeat, as a browser does on its own fast timer); one that arrives instead of the original
  moves the handshake on. OpenSSL's own timer keeps running.
- **SCTP**: RTO initial 0.25 s instead of 3 s, minimum 0.25 s instead of 1 s, and doubled at
  each T1 (INIT, COOKIE-ECHO) or T3 (data) expiry as RFC 9260 §6.3.3 asks — aiortc never backs
  off, which is harmless at 3 s but would make a short timer fire forever on a path slower than
  it (no chunk would ever be acknowledged unretransmitted, so no RTT sample would correct it).
  Before the first RTT sample the backoff stops at ``sctp_backoff_max`` (1 s): a lossy path keeps
  retrying often, a slow one (RTT up to ~1 s) soon gets a sample and the usual ``srtt + 4 rttvar``.
- **SCTP INIT, fixed**: aiortc resends its INIT with the peer's verification tag once it has
  seen the peer's INIT (both ends start the association, RFC 8841 §9.3), and the peer drops
  such an INIT (RFC 9260 §8.5.1: an INIT carries tag 0). If both INIT-ACKs of the crossing
  INITs are lost (4 % of set-ups at 20 % loss) two aiortc ends never associate and the data
  channel never opens; against Chromium our INIT resends were useless. Our INITs now go out
  with tag 0 as they should.
- **ICE**: aioice retransmits a connectivity check after 0.5 s, 1 s, 2 s…; the controlled side
  (the gateway) only completes once its own check of the pair succeeds, so one lost check or
  answer cost it 0.5–1.5 s. Checks of this connection start at ``ice_rto`` (0.15 s, doubling).
  A duplicate check is a few dozen bytes; Chromium paces its first checks at ~50 ms itself.

What a set-up measured phase by phase at 20 % loss then showed (``bench/setup_phases.py``), and
what this module does about it:

- **Copies** (:class:`~gateway.webrtc.setup_copies.SetupCopier`, ``SETUP_COPIES``): every datagram we send until the data
  channel is open (checks and their answers, DTLS flights, SCTP's INIT…COOKIE-ACK, the
  channel's ACK and first events) goes out twice, 10 ms apart, so it is lost with p² instead of
  p. The peer drops the copy of what already arrived; on a clean link it costs ~15 small datagrams.
- **The DTLS server's seat** (:func:`prefer_dtls_server`, ``DTLS_ROLE``): we answer ``passive``,
  so the browser's ClientHello leaves as its ICE completes and our final flight is repeated until
  the browser speaks. As DTLS client, a lost final flight of the browser's cost OpenSSL's 1 s.
- **Timers from the round trip** (:class:`RoundTrip`): the DTLS resend and the association's first
  RTO start at 1.5 ICE round trips + 50 ms when that exceeds 0.25 s, so a 300 ms path resends
  nothing before its answer could come.
- **A lost COOKIE-ACK** (:func:`_implicit_cookie_ack`): the browser's DATA while we wait for it
  means the browser is established; aiortc held our DATA_CHANNEL_ACK and events for T1.

A duplicate never breaks a slow but clean link; it costs a few hundred bytes per set-up.
The values are settings (:meth:`TransportTimers.from_config`: ``DTLS_RESEND_INITIAL_MS``,
``DTLS_RESEND_MAX_MS``, ``DTLS_RESENDS``, ``SCTP_RTO_INITIAL_MS``, ``SCTP_RTO_MIN_MS``,
``SCTP_BACKOFF_MAX_MS``, ``ICE_RTO_MS``, ``SETUP_COPIES``, ``SETUP_COPY_GAP_MS``, ``DTLS_ROLE``;
``FAST_SETUP_TIMERS=false`` leaves aiortc's own and answers as aiortc does).
What is patched is instance state: ``RTCIceTransport._send``/``_recv`` (already instance attributes),
``RTCSctpTransport._rto`` and the instance's ``_update_rto``/``_receive_chunk``, each of the ICE
connection's STUN protocols' ``transactions`` table (a dict that sets a new transaction's first
timeout) and, until the set-up is over, its ``send_stun``/``send_data``. :func:`check_timer_internals`
verifies, once, that aiortc still reads them the way this relies on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from aioice import ice as aioice_ice
from aioice import stun as aioice_stun
from aiortc import RTCPeerConnection
from aiortc import rtcsctptransport as sctp_module
from aiortc.rtcdtlstransport import RTCDtlsTransport, State
from aiortc.rtcicetransport import RTCIceTransport
from aiortc.rtcsctptransport import (
    Chunk,
    CookieAckChunk,
    DataChunk,
    InitChunk,
    RTCSctpTransport,
    SackChunk,
    serialize_packet,
)

from .setup_copies import SetupCopier

if TYPE_CHECKING:
    from ..config import Config

logger = logging.getLogger(__name__)
FLIGHT_GAP_S = 0.005  # with nothing received between, datagrams this close are one flight


class TimerInternalsError(RuntimeError):
    """aiortc's transports no longer keep their timers where this module sets them."""


@dataclass(frozen=True)
class TransportTimers:
    dtls_initial: float = 0.25
    dtls_max: float = 1.2
    dtls_resends: int = 8  # per flight, at most
    sctp_rto_initial: float = 0.25
    sctp_rto_min: float = 0.25
    sctp_backoff_max: float = 1.0  # until the first RTT sample
    ice_rto: float = 0.15
    setup_copies: int = 1  # extra copies of each set-up datagram we send (0: none)
    copy_gap: float = 0.01  # s between a datagram and its copy
    dtls_server: bool = True  # answer a=setup:passive to an actpass offer (we send the last flight)

    @classmethod
    def from_config(cls, config: Config) -> TransportTimers | None:
        """The timers the settings ask for (``FAST_SETUP_TIMERS``, ``DTLS_*``, ``SCTP_*``,
        ``ICE_RTO_MS``), or None: aiortc's own."""
        if not config.fast_setup_timers:
            return None
        return cls(dtls_initial=config.dtls_resend_initial_ms / 1000, dtls_max=config.dtls_resend_max_ms / 1000,
                   dtls_resends=config.dtls_resends, sctp_rto_initial=config.sctp_rto_initial_ms / 1000,
                   sctp_rto_min=config.sctp_rto_min_ms / 1000, sctp_backoff_max=config.sctp_backoff_max_ms / 1000,
                   ice_rto=config.ice_rto_ms / 1000, setup_copies=config.setup_copies,
                   copy_gap=config.setup_copy_gap_ms / 1000, dtls_server=config.dtls_role == "server")


@cache
def check_timer_internals() -> None:
    names = [
        (RTCIceTransport.__init__, "_send"),  # instance attributes we can wrap
        (RTCIceTransport.__init__, "_recv"),
        (RTCDtlsTransport._write_ssl, "_send"),  # handshake flights go out through it
        (RTCDtlsTransport._recv_next, "_recv"),  # and come in through this
        (RTCDtlsTransport._recv_next, "_RTCDtlsTransport__rx_packets"),  # counting them
        (RTCDtlsTransport._set_state, "_state"),
        (RTCSctpTransport.__init__, "_rto"),
        (RTCSctpTransport._t1_start, "_rto"),
        (RTCSctpTransport._t3_start, "_rto"),
        (RTCSctpTransport._update_rto, "_rto"),
        (RTCSctpTransport._t1_start, "_t1_expired"),  # looked up on the instance when armed
        (RTCSctpTransport._t1_expired, "_t1_expired"),
        (RTCSctpTransport._t3_start, "_t3_expired"),
        (RTCSctpTransport._t3_restart, "_t3_expired"),
        (RTCSctpTransport._t1_expired, "_send_chunk"),  # how an INIT is resent
        (RTCSctpTransport._send_chunk, "_RTCSctpTransport__transport"),
        (RTCSctpTransport._send_chunk, "serialize_packet"),
        (RTCSctpTransport._handle_data, "_receive_chunk"),  # each chunk, looked up on the instance
        (RTCSctpTransport._receive_chunk, "CookieAckChunk"),  # a COOKIE-ACK in COOKIE-ECHOED: established
        (RTCSctpTransport._data_channel_flush, "_association_state"),  # held until established
    ]
    names += [(aioice_ice.StunProtocol.request, "transactions"), (aioice_stun.Transaction.__init__, "_Transaction__timeout_delay"),
              (aioice_stun.Transaction._Transaction__retry, "_Transaction__timeout_delay"),  # type: ignore[attr-defined]
              (aioice_ice.StunProtocol.request, "transactions"),  # deleted when answered: an RTT sample
              (aioice_ice.StunProtocol.send_stun, "transport"),  # copies go out through it
              (aioice_ice.StunProtocol.send_data, "transport"),
              (aioice_ice.Connection.sendto, "send_data"),  # looked up on the protocol instance
              (RTCDtlsTransport.start, "_set_role"),
              (RTCPeerConnection.createAnswer, "_role")]
    problems = [f"{function.__qualname__} no longer uses {name}" for function, name in names
                if name not in function.__code__.co_names]
    if not hasattr(sctp_module, "SCTP_RTO_MAX"):
        problems.append("rtcsctptransport has no SCTP_RTO_MAX")
    if problems:
        raise TimerInternalsError(f"aiortc changed ({'; '.join(problems)}): transport_timers is written for "
                                  "aiortc==1.16.0")


@dataclass
class Tuning:
    """What :func:`tune_transport_timers` attached to one peer connection (for tests and logs)."""

    resenders: list[DtlsFlightResender]
    copiers: list[SetupCopier]
    round_trips: list[RoundTrip]


def tune_transport_timers(pc: RTCPeerConnection, timers: TransportTimers | None = None) -> Tuning:
    """After the local description is set (the transports exist, none has started)."""
    check_timer_internals()
    timers = timers or TransportTimers()
    tuning = Tuning([], [], [])
    dtls_transports = {id(t.sender.transport): t.sender.transport for t in pc.getTransceivers()}
    if pc.sctp is not None:
        dtls_transports[id(pc.sctp.transport)] = pc.sctp.transport
        tune_sctp(pc.sctp, timers)
    for dtls in dtls_transports.values():
        rtt = RoundTrip()
        tuning.round_trips.append(rtt)
        tune_ice(dtls.transport, timers, rtt)
        if dtls.state == "new":
            tuning.resenders.append(DtlsFlightResender(dtls, timers, rtt))
            if pc.sctp is not None and pc.sctp.transport is dtls:
                _sctp_rto_from_ice(dtls, pc.sctp, timers, rtt)
            if timers.setup_copies:
                tuning.copiers.append(SetupCopier(pc, dtls, timers))
    return tuning


def prefer_dtls_server(pc: RTCPeerConnection, timers: TransportTimers | None) -> None:
    """Between ``setRemoteDescription(offer)`` and ``createAnswer()``: answer ``a=setup:passive``
    to an ``actpass`` offer, so that the browser is the DTLS client and we send the handshake's
    last flight. aiortc answers ``active`` otherwise. Two things make the server's seat the quick
    one on a lossy link. (a) The browser, as the ICE controlling agent, completes ICE as soon as
    its nominating check is answered and sends its ClientHello then, while our controlled agent
    completes only once a check of its own comes back, often a retransmission later. (b) As
    client, our last flight (Finished) is answered by the browser's; if that answer is lost, only
    OpenSSL's own 1 s timer retransmits in a form the browser replies to (a byte-for-byte copy is
    dropped by its replay check). As server, we repeat our last flight until the browser's first
    data shows it arrived, and an identical copy is what the browser needs when the original
    was lost."""
    if timers is None or not timers.dtls_server:
        return
    transports = [t.receiver.transport for t in pc.getTransceivers()]
    if pc.sctp is not None:
        transports.append(pc.sctp.transport)
    for dtls in transports:
        if dtls._role == "auto" and dtls.state == "new":
            dtls._set_role("server")


class RoundTrip:
    """The path's round trip as the connectivity checks measured it: the shortest time from a
    check's first transmission to its answer. Exact for a check answered at its first try; for
    one answered after a retransmission it is longer than the round trip, never shorter (which
    copy was answered can't be told), so a timer set from it never fires early: on a path slower
    than ``ice_rto`` every check is retransmitted once before its answer comes."""

    def __init__(self) -> None:
        self.rtt: float | None = None

    def sample(self, rtt: float) -> None:
        self.rtt = rtt if self.rtt is None else min(self.rtt, rtt)

    def timeout(self, floor: float, ceiling: float) -> float:
        """A first retransmission timeout for a handshake message: ``floor`` until a check was
        answered, then 1.5 round trips + 50 ms (the peer's processing) if that is longer."""
        if self.rtt is None:
            return floor
        return max(floor, min(ceiling, 1.5 * self.rtt + 0.05))


class _QuickTransactions(dict[Any, Any]):
    """A STUN protocol's table of transactions in flight, that starts each one's retransmission
    timer at ``rto`` instead of aioice's 0.5 s (set between construction and ``run()``), and
    times them from creation to answer (``StunProtocol.request`` deletes them when done)."""

    def __init__(self, existing: dict[Any, Any], rto: float, rtt: RoundTrip | None = None) -> None:
        super().__init__(existing)
        self.rto = rto
        self.round_trip = rtt or RoundTrip()
        self._started: dict[Any, float] = {}

    def __setitem__(self, key: Any, transaction: Any) -> None:
        transaction._Transaction__timeout_delay = self.rto
        self._started[key] = asyncio.get_running_loop().time()
        super().__setitem__(key, transaction)

    def __delitem__(self, key: Any) -> None:
        transaction = self.get(key)
        started = self._started.pop(key, None)
        super().__delitem__(key)
        future = getattr(transaction, "_Transaction__future", None)
        if (started is not None and future is not None and future.done() and not future.cancelled()
                and future.exception() is None):
            self.round_trip.sample(asyncio.get_running_loop().time() - started)


def tune_ice(ice: RTCIceTransport, timers: TransportTimers, rtt: RoundTrip | None = None) -> None:
    """After gathering (``setLocalDescription``): quicker connectivity-check retransmissions."""
    for protocol in ice._connection._protocols:
        if not isinstance(protocol.transactions, _QuickTransactions):
            protocol.transactions = _QuickTransactions(protocol.transactions, timers.ice_rto, rtt)


def tune_sctp(sctp: RTCSctpTransport, timers: TransportTimers) -> None:
    rto_min, rto_max = timers.sctp_rto_min, sctp_module.SCTP_RTO_MAX
    if sctp._srtt is None:
        sctp._rto = timers.sctp_rto_initial
    update = sctp._update_rto

    def update_rto(rtt: float) -> None:  # RFC 4960's formula, with our minimum
        update(rtt)
        srtt, rttvar = sctp._srtt, sctp._rttvar
        if srtt is not None and rttvar is not None:
            sctp._rto = max(rto_min, min(srtt + 4 * rttvar, rto_max))

    sctp._update_rto = update_rto  # type: ignore[method-assign,assignment]
    sctp._t1_expired = _backing_off(sctp, sctp._t1_expired, timers)  # type: ignore[method-assign]
    sctp._send_chunk = _init_with_tag_zero(sctp, sctp._send_chunk)  # type: ignore[method-assign,assignment]
    sctp._t3_expired = _backing_off(sctp, sctp._t3_expired, timers)  # type: ignore[method-assign]
    sctp._receive_chunk = _implicit_cookie_ack(sctp, sctp._receive_chunk)  # type: ignore[method-assign,assignment]


def _implicit_cookie_ack(sctp: RTCSctpTransport,
                         receive: Callable[[Chunk], Coroutine[Any, Any, None]]) -> Callable[[Chunk], Coroutine[Any, Any, None]]:
    """DATA or SACK from the peer while our COOKIE-ECHO waits for its COOKIE-ACK: the peer is
    established (it sends neither before), so its COOKIE-ACK was lost; take the DATA as the ACK.
    aiortc would process the peer's DATA_CHANNEL_OPEN but hold our DATA_CHANNEL_ACK and every
    event until T1 resent the COOKIE-ECHO and a COOKIE-ACK came back: with Chromium, which opens
    its channel on sending OPEN, the page sat open and silent for 1–3 s at 20 % loss."""

    async def receive_chunk(chunk: Chunk) -> None:
        if isinstance(chunk, DataChunk | SackChunk) and sctp._association_state == RTCSctpTransport.State.COOKIE_ECHOED:
            await receive(CookieAckChunk())
        await receive(chunk)

    return receive_chunk


def _sctp_rto_from_ice(dtls: RTCDtlsTransport, sctp: RTCSctpTransport, timers: TransportTimers,
                       rtt: RoundTrip) -> None:
    """The association starts once DTLS is connected: its first RTO (INIT, COOKIE-ECHO) follows
    the round trip ICE measured, if that is longer than ``sctp_rto_initial``. On a 300 ms path a
    250 ms T1 would resend every INIT before its answer could come."""

    def on_state() -> None:
        if dtls._state == State.CONNECTED and sctp._srtt is None:
            sctp._rto = max(sctp._rto, rtt.timeout(timers.sctp_rto_initial, timers.sctp_backoff_max))
            dtls.remove_listener("statechange", on_state)

    dtls.on("statechange", on_state)


def _init_with_tag_zero(sctp: RTCSctpTransport,
                        send_chunk: Callable[[Chunk], Coroutine[Any, Any, None]]) -> Callable[[Chunk], Coroutine[Any, Any, None]]:
    async def send(chunk: Chunk) -> None:
        if not isinstance(chunk, InitChunk) or not sctp._remote_verification_tag or sctp._remote_port is None:
            await send_chunk(chunk)
            return
        transport = sctp._RTCSctpTransport__transport  # type: ignore[attr-defined]
        await transport._send_data(serialize_packet(sctp._local_port, sctp._remote_port, 0, chunk))

    return send


def _backing_off(sctp: RTCSctpTransport, expired: Callable[[], None], timers: TransportTimers) -> Callable[[], None]:
    def expired_with_backoff() -> None:
        limit = timers.sctp_backoff_max if sctp._srtt is None else sctp_module.SCTP_RTO_MAX
        sctp._rto = max(sctp._rto, min(sctp._rto * 2, limit))
        expired()  # re-arms its timer (or the next transmission's) with the doubled RTO

    return expired_with_backoff


class DtlsFlightResender:
    """Repeats our last DTLS handshake flight while the peer's answer is overdue (see module doc).

    Lives from the transport's creation to the end of its handshake: the wrapper on the ICE
    transport's ``_send`` is removed then, so media never passes through it. The resends are
    futures it holds until they finish; the timer is cancelled when the handshake ends.
    """

    def __init__(self, dtls: RTCDtlsTransport, timers: TransportTimers, rtt: RoundTrip | None = None) -> None:
        self._dtls = dtls
        self._ice = dtls.transport
        self._timers = timers
        self._round_trip = rtt or RoundTrip()
        self._send: Callable[[bytes], Coroutine[Any, Any, None]] = self._ice._send
        self._recv: Callable[[], Coroutine[Any, Any, bytes]] = self._ice._recv
        self._ice._send = self._sending
        self._ice._recv = self._receiving
        self._peer_done = False  # application data or SRTP came: the peer finished its handshake
        self._flight: list[bytes] = []
        self._flight_rx = -1
        self._last_send = float("-inf")
        self._rto = timers.dtls_initial
        self._resends = 0
        self._timer: asyncio.TimerHandle | None = None
        self._pending: set[asyncio.Future[Any]] = set()
        self.resent = 0  # datagrams sent again (for tests and logs)
        self._done = False
        dtls.on("statechange", self._on_state)

    async def _receiving(self) -> bytes:
        data = await self._recv()
        if data and (data[0] == 23 or 127 < data[0] < 192):
            self._peer_done = True
            if self._dtls._state != State.CONNECTING:
                self._finish()
        return data

    def _received(self) -> int:
        count: int = self._dtls._RTCDtlsTransport__rx_packets  # type: ignore[attr-defined]
        return count

    async def _sending(self, data: bytes) -> None:
        if not self._done and data and 19 < data[0] < 64 and self._dtls._state == State.CONNECTING:
            loop = asyncio.get_running_loop()
            now = loop.time()
            received = self._received()
            if received != self._flight_rx:  # a new flight, in answer to the peer: fresh timer
                self._rto = self._round_trip.timeout(self._timers.dtls_initial, self._timers.dtls_max)
                self._resends = 0
                self._flight_rx = received
                self._flight = []
            elif now - self._last_send > FLIGHT_GAP_S:
                self._flight = []  # OpenSSL repeating this flight on its own timer: same backoff
            self._flight.append(data)
            self._last_send = now
            if self._timer is not None:
                self._timer.cancel()
            self._timer = loop.call_later(self._rto, self._expired)
        await self._send(data)

    def _expired(self) -> None:
        self._timer = None
        if self._done or self._resends >= self._timers.dtls_resends:
            self._finish()
            return
        self._resends += 1
        self.resent += len(self._flight)
        for datagram in self._flight:
            future = asyncio.ensure_future(self._send(datagram))
            self._pending.add(future)
            future.add_done_callback(self._finished)
        self._rto = min(self._rto * 2, self._timers.dtls_max)
        self._timer = asyncio.get_running_loop().call_later(self._rto, self._expired)

    def _finished(self, future: asyncio.Future[Any]) -> None:
        self._pending.discard(future)
        if not future.cancelled() and future.exception() is not None:
            logger.debug("DTLS flight resend failed: %s", future.exception())

    def _on_state(self) -> None:
        state = self._dtls._state
        if state == State.CONNECTING or self._done:
            return
        last_word_ours = self._flight and self._flight_rx == self._received()
        if state == State.CONNECTED and last_word_ours and not self._peer_done:
            return  # our final flight may be lost: keep repeating it until the peer speaks
        self._finish()

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._ice.__dict__.get("_send") == self._sending:
            self._ice._send = self._send  # type: ignore[assignment]
        if self._ice.__dict__.get("_recv") == self._receiving:
            self._ice._recv = self._recv
        if self.resent:
            logger.debug("DTLS handshake %s after %d resent datagrams", self._dtls.state, self.resent)
