"""Copies of a connection's set-up datagrams, so one lost on a lossy link costs no timeout.

:func:`~gateway.webrtc.transport_timers.tune_transport_timers` attaches a :class:`SetupCopier`
to each DTLS transport when ``SETUP_COPIES`` > 0; the module doc there says what it saved.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from aiortc import RTCPeerConnection
from aiortc.rtcdtlstransport import RTCDtlsTransport, State

if TYPE_CHECKING:
    from .transport_timers import TransportTimers

logger = logging.getLogger(__name__)
COPY_GRACE_S = 0.5  # after the data channel opened, its first events are copied too
COPY_WINDOW_S = 15.0  # no copies after this long (a set-up that slow is not saved by them)
MAX_COPIES = 80  # per connection


class SetupCopier:
    """Sends every datagram of the set-up twice (``setup_copies`` extra copies, ``copy_gap`` apart):
    connectivity checks and their answers, DTLS flights, the SCTP association and the data
    channel's OPEN/ACK, until the data channel is open (plus ``COPY_GRACE_S`` for the first
    events) — never media, never later traffic.

    Each lost handshake datagram costs a retransmission timeout (0.25 s or more); at 20 % loss
    one of the ~10 we send is lost in most set-ups. A datagram sent twice is lost with p² (4 %)
    instead of p where losses are independent, and the gap spreads the copies past short bursts.
    A copy that arrives after its original is dropped where any duplicate is: STUN answers
    requests again (the answer to an answered transaction is ignored), DTLS's replay check drops
    a record seen already, so SCTP never sees it. It costs at most ``MAX_COPIES`` datagrams of a
    few hundred bytes per connection, and nothing on a clean link but those bytes.
    """

    def __init__(self, pc: RTCPeerConnection, dtls: RTCDtlsTransport, timers: TransportTimers) -> None:
        self._timers = timers
        self._handles: set[asyncio.TimerHandle] = set()
        self._done = False
        self.copies = 0  # datagrams sent again (for tests and logs)
        loop = asyncio.get_running_loop()
        self._deadline = loop.time() + COPY_WINDOW_S
        self._originals: list[tuple[Any, Any, Any]] = []
        for protocol in dtls.transport._connection._protocols:
            self._wrap(protocol)
        with_channel = pc.sctp is not None and pc.sctp.transport is dtls

        def on_dtls_state() -> None:
            if dtls._state == State.CONNECTED and not with_channel:
                self._soon_done()  # no data channel: the handshake was the set-up
            elif dtls._state in (State.FAILED, State.CLOSED):
                self.finish()

        if with_channel:
            pc.on("datachannel", self._soon_done)  # the peer's OPEN came (our ACK is on its way)
        dtls.on("statechange", on_dtls_state)

    def _wrap(self, protocol: Any) -> None:
        send_stun, send_data = protocol.send_stun, protocol.send_data

        def stun_twice(message: Any, addr: tuple[str, int]) -> None:
            send_stun(message, addr)
            self._copy(protocol, bytes(message), addr)

        async def data_twice(data: bytes, addr: tuple[str, int]) -> None:
            await send_data(data, addr)
            if data and not 127 < data[0] < 192:  # not SRTP/SRTCP: media is never copied
                self._copy(protocol, data, addr)

        protocol.send_stun, protocol.send_data = stun_twice, data_twice
        self._originals.append((protocol, send_stun, send_data))

    def _copy(self, protocol: Any, data: bytes, addr: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        if self._done or loop.time() > self._deadline or self.copies >= MAX_COPIES:
            if not self._done:
                self.finish()
            return
        for index in range(self._timers.setup_copies):
            handle = loop.call_later(self._timers.copy_gap * (index + 1), self._send_copy, protocol, data, addr)
            self._handles.add(handle)
            self.copies += 1

    def _send_copy(self, protocol: Any, data: bytes, addr: tuple[str, int]) -> None:
        now = asyncio.get_running_loop().time()
        self._handles = {h for h in self._handles if h.when() > now}  # those still to come
        transport = protocol.transport
        if transport is None or transport.is_closing():
            return
        try:
            transport.sendto(data, addr)
        except OSError as exc:  # as aioice's own sendto: the network may be gone
            logger.debug("set-up copy not sent: %s", exc)

    def _soon_done(self, *_: Any) -> None:
        if not self._done:
            self._handles.add(asyncio.get_running_loop().call_later(COPY_GRACE_S, self.finish))

    def finish(self) -> None:
        """No more copies (the set-up is over); the protocols send as before."""
        if self._done:
            return
        self._done = True
        for handle in self._handles:
            handle.cancel()
        self._handles.clear()
        for protocol, send_stun, send_data in self._originals:
            protocol.send_stun, protocol.send_data = send_stun, send_data
        if self.copies:
            logger.debug("set-up datagrams copied: %d", self.copies)
