"""Set-up retransmission timers (gateway/webrtc/transport_timers.py) between two real aiortc peers
over loopback, with the datagrams each side sends dropped or delayed on purpose."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiortc import RTCPeerConnection

from gateway.config import Config, ConfigError, load_config
from gateway.webrtc.setup_copies import MAX_COPIES
from gateway.webrtc.transport_timers import (
    DtlsFlightResender,
    RoundTrip,
    TransportTimers,
    check_timer_internals,
    prefer_dtls_server,
    tune_transport_timers,
)


def ice_transports(pc: RTCPeerConnection) -> list[Any]:
    return list({id(t.sender.transport): t.sender.transport.transport for t in pc.getTransceivers()}.values())


def impair(pc: RTCPeerConnection, drop: Callable[[bytes], bool], delay: float = 0.0) -> None:
    """Below whatever the tuning wraps: every datagram ``pc`` sends passes ``drop`` and ``delay``."""
    for ice in ice_transports(pc):
        send = ice._connection.send
        pending: set[asyncio.Future[Any]] = set()

        async def impaired(data: bytes, send: Any = send, pending: set[asyncio.Future[Any]] = pending) -> None:
            if drop(data):
                return
            if not delay:
                await send(data)
                return
            future = asyncio.ensure_future(late(send, data, delay))
            pending.add(future)
            future.add_done_callback(pending.discard)

        ice._send = impaired


async def late(send: Any, data: bytes, delay: float) -> None:
    await asyncio.sleep(delay)
    with contextlib.suppress(ConnectionError):  # closed meanwhile
        await send(data)


def first_of_each(kind: Callable[[bytes], bool]) -> Callable[[bytes], bool]:
    """Drops the first datagram of a kind (the DTLS ClientHello, the SCTP INIT…), nothing else."""
    seen = False

    def drop(data: bytes) -> bool:
        nonlocal seen
        if kind(data) and not seen:
            seen = True
            return True
        return False

    return drop


async def call(tune: bool, impair_offerer: Callable[[RTCPeerConnection], None],
               impair_answerer: Callable[[RTCPeerConnection], None]) -> tuple[float, float, Any, Any, Any]:
    """Offerer and answerer (the gateway's side): seconds to connected and to the channel open."""
    offerer, answerer = RTCPeerConnection(), RTCPeerConnection()
    channel = offerer.createDataChannel("oai-events")
    offerer.addTransceiver("audio")
    await offerer.setLocalDescription(await offerer.createOffer())
    await answerer.setRemoteDescription(offerer.localDescription)
    await answerer.setLocalDescription(await answerer.createAnswer())
    impair_offerer(offerer)
    impair_answerer(answerer)
    if tune:
        tune_transport_timers(offerer)
        tune_transport_timers(answerer)
    start = time.monotonic()
    await offerer.setRemoteDescription(answerer.localDescription)
    while offerer.connectionState != "connected" or answerer.connectionState != "connected":
        await asyncio.sleep(0.005)
    connected = time.monotonic() - start
    while channel.readyState != "open":
        await asyncio.sleep(0.005)
    return connected, time.monotonic() - start, offerer, answerer, channel


def is_dtls(data: bytes) -> bool:
    return bool(data) and data[0] == 22  # a handshake record: the first flight of either side


def is_sctp(data: bytes) -> bool:
    return bool(data) and data[0] == 23  # application data: SCTP, INIT first


def test_aiortc_still_keeps_its_timers_where_they_are_set() -> None:
    check_timer_internals()


@pytest.mark.parametrize("tune", [True, False], ids=["tuned", "stock"])
async def test_a_lost_first_dtls_flight_costs_a_quarter_second_not_one(tune: bool) -> None:
    connected, _, offerer, answerer, _ = await call(tune, lambda pc: impair(pc, first_of_each(is_dtls)),
                                                 lambda pc: impair(pc, first_of_each(is_dtls)))
    try:
        if tune:
            assert connected < 0.8, connected  # 0.25 s resend instead of OpenSSL's 1 s
            for pc in (offerer, answerer):  # media no longer passes through the resender
                assert all("_sending" not in repr(ice.__dict__.get("_send")) for ice in ice_transports(pc))
        else:
            assert connected >= 0.95, connected  # what it costs without (OpenSSL's 1 s timer)
    finally:
        await offerer.close()
        await answerer.close()


@pytest.mark.parametrize("tune", [True, False], ids=["tuned", "stock"])
async def test_a_lost_sctp_init_costs_a_quarter_second_not_three(tune: bool) -> None:
    connected, opened, offerer, answerer, _ = await call(tune, lambda pc: impair(pc, first_of_each(is_sctp)),
                                                      lambda pc: impair(pc, first_of_each(is_sctp)))
    try:
        if tune:
            assert opened - connected < 1.0, (connected, opened)
        else:
            assert opened - connected >= 2.9, (connected, opened)  # aiortc's RTO.initial of 3 s
    finally:
        await offerer.close()
        await answerer.close()


async def test_a_slow_clean_link_still_works_and_learns_its_round_trip() -> None:
    """600 ms each way: shorter timers fire before every answer, back off, and give way to the RTT."""
    _, _, offerer, answerer, channel = await call(True, lambda pc: impair(pc, lambda _: False, delay=0.6),
                                                  lambda pc: impair(pc, lambda _: False, delay=0.6))
    try:
        for index in range(5):
            channel.send(f"event {index}")
            await asyncio.sleep(0.3)
        deadline = time.monotonic() + 10
        while offerer.sctp is not None and offerer.sctp._srtt is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert offerer.sctp is not None and offerer.sctp._srtt is not None  # an RTT sample was taken
        assert offerer.sctp._rto > 1.2  # and the RTO follows the 1.2 s round trip, not our 0.25 s
    finally:
        await offerer.close()
        await answerer.close()


def test_the_resender_is_per_connection() -> None:
    assert TransportTimers().dtls_initial < 1.0 and hasattr(DtlsFlightResender, "_expired")


# --- the gateway's seat, copies of set-up datagrams, timers from the measured round trip -----------


class Wire:
    """A socket's transport that records, loses or delays what is sent through it (uvloop's own
    transports can't be patched)."""

    def __init__(self, transport: Any, sent: list[tuple[float, bytes]], drop: Callable[[bytes], bool],
                 delay: float) -> None:
        self._transport, self._sent, self._drop, self._delay = transport, sent, drop, delay

    def sendto(self, data: bytes, addr: Any = None) -> None:
        self._sent.append((time.monotonic(), bytes(data)))
        if self._drop(bytes(data)):
            return
        if self._delay:
            asyncio.get_running_loop().call_later(self._delay, self._later, bytes(data), addr)
        else:
            self._transport.sendto(data, addr)

    def _later(self, data: bytes, addr: Any) -> None:
        if not self._transport.is_closing():
            self._transport.sendto(data, addr)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def on_the_wire(pc: RTCPeerConnection, drop: Callable[[bytes], bool] = lambda _: False,
                delay: float = 0.0) -> list[tuple[float, bytes]]:
    """Every datagram ``pc`` puts on its sockets (STUN included, copies included), with its time;
    ``drop`` loses some of them there, ``delay`` holds each back (the wire, not the stack)."""
    sent: list[tuple[float, bytes]] = []
    for ice in ice_transports(pc):
        for protocol in ice._connection._protocols:
            protocol.transport = Wire(protocol.transport, sent, drop, delay)
    return sent


async def answered(timers: TransportTimers, offerer_timers: TransportTimers | None = None,
                   wire: Callable[[RTCPeerConnection], list[tuple[float, bytes]]] | None = None,
                   offerer_wire: Callable[[RTCPeerConnection], Any] | None = None) -> dict[str, Any]:
    """A browser-like offerer (fast timers, no copies) and the gateway's answerer, as browser_peer.py
    sets it up; returns the answer, both peers, the answerer's datagrams and tuning, and timings."""
    offerer, answerer = RTCPeerConnection(), RTCPeerConnection()
    channel = offerer.createDataChannel("oai-events")
    offerer.addTransceiver("audio")
    await offerer.setLocalDescription(await offerer.createOffer())
    await answerer.setRemoteDescription(offerer.localDescription)
    prefer_dtls_server(answerer, timers)
    await answerer.setLocalDescription(await answerer.createAnswer())
    sent = wire(answerer) if wire else on_the_wire(answerer)
    if offerer_wire:
        offerer_wire(offerer)
    tuning = tune_transport_timers(answerer, timers)
    tune_transport_timers(offerer, offerer_timers or TransportTimers(setup_copies=0))
    start = time.monotonic()
    await offerer.setRemoteDescription(answerer.localDescription)
    deadline = start + 15
    while channel.readyState != "open" and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    return {"answer": answerer.localDescription.sdp, "offerer": offerer, "answerer": answerer, "sent": sent,
            "tuning": tuning, "channel": channel, "start": start, "opened": time.monotonic() - start}


def setup_datagrams(result: dict[str, Any]) -> list[bytes]:
    """What the answerer sent from the start until the channel opened, media left out, with the
    copies of those sent last (they follow 10 ms later)."""
    end = result["start"] + result["opened"]
    first = {data for when, data in result["sent"] if when <= end and not 127 < data[0] < 192}
    return [data for when, data in result["sent"] if data in first and when <= end + 0.1]


async def close(result: dict[str, Any]) -> None:
    await result["offerer"].close()
    await result["answerer"].close()


@pytest.mark.parametrize("server", [True, False], ids=["server", "client"])
async def test_the_gateway_answers_as_the_dtls_server(server: bool) -> None:
    """As DTLS server the gateway sends the last flight and repeats it until the browser speaks;
    the browser's ClientHello leaves as soon as its own ICE check is answered."""
    result = await answered(TransportTimers(dtls_server=server))
    try:
        assert result["channel"].readyState == "open"
        assert ("a=setup:passive" if server else "a=setup:active") in result["answer"]
        assert result["answerer"].sctp.transport._role == ("server" if server else "client")
    finally:
        await close(result)


async def test_each_setup_datagram_goes_out_twice_and_media_once() -> None:
    result = await answered(TransportTimers())
    try:
        await asyncio.sleep(1.5)  # the channel is open: copies stop after COPY_GRACE_S
        for index in range(5):  # later traffic: the gateway acknowledges these
            result["channel"].send(f"event {index}")
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        before_media = setup_datagrams(result)
        counts = collections.Counter(before_media)
        assert counts and all(n >= 2 for n in counts.values()), counts.most_common()[-3:]
        kinds = {data[0] for data in counts}
        assert kinds & {0, 1} and 22 in kinds and 23 in kinds  # STUN, DTLS handshake, SCTP all copied
        late = [data for when, data in result["sent"] if when > result["start"] + result["opened"] + 1.0]
        assert len(late) >= 3 and max(collections.Counter(late).values()) == 1  # later traffic: once
        (copier,) = result["tuning"].copiers
        assert copier.copies == len(before_media) - len(counts) <= MAX_COPIES
    finally:
        await close(result)


async def test_a_lost_handshake_datagram_costs_nothing_when_its_copy_arrives() -> None:
    """The first DTLS flight the gateway sends is lost on the wire: without a copy the browser
    waits for a resend (0.25 s at least), with one the handshake goes on 10 ms later."""
    timings = {}
    for copies in (1, 0):
        lost = first_of_each(is_dtls)
        result = await answered(TransportTimers(setup_copies=copies),
                                wire=lambda pc, lost=lost: on_the_wire(pc, drop=lost))  # type: ignore[misc]
        try:
            assert result["channel"].readyState == "open"
            timings[copies] = result["opened"]
        finally:
            await close(result)
    assert timings[1] < timings[0] - 0.15, timings
    assert timings[1] < 0.5, timings


async def test_a_slow_clean_link_sets_up_at_its_round_trip_without_spurious_resends() -> None:
    """150 ms each way, nothing lost: the DTLS resend and the SCTP INIT timer start from the round
    trip ICE measured, so neither fires before its answer could come; the gateway sends each
    set-up datagram twice (its copy) and nothing more."""
    delayed = lambda pc: on_the_wire(pc, delay=0.15)  # noqa: E731
    result = await answered(TransportTimers(), wire=delayed, offerer_wire=delayed)
    try:
        assert result["channel"].readyState == "open"
        (rtt,) = result["tuning"].round_trips
        assert rtt.rtt is not None and 0.29 < rtt.rtt < 0.5, rtt.rtt
        (resender,) = result["tuning"].resenders
        assert resender.resent == 0  # no flight repeated before its answer
        datagrams = setup_datagrams(result)
        distinct = collections.Counter(datagrams)
        assert max(distinct.values()) <= 2 + 2, distinct.most_common(3)  # a copy; at most one resend + copy
        assert len(datagrams) <= 2 * 20, len(datagrams)
        assert result["opened"] < 6 * 0.3 + 0.5, result["opened"]  # about 5 round trips
    finally:
        await close(result)


def test_the_round_trip_sets_the_first_timeouts() -> None:
    rtt = RoundTrip()
    assert rtt.timeout(0.25, 1.0) == 0.25  # nothing measured: the floor
    rtt.sample(0.4)
    rtt.sample(0.3)  # the shortest counts
    assert rtt.timeout(0.25, 1.0) == pytest.approx(0.5)
    assert rtt.timeout(0.25, 0.4) == 0.4
    rtt.sample(0.05)
    assert rtt.timeout(0.25, 1.0) == 0.25


def test_the_settings_reach_the_timers_and_bad_ones_are_refused() -> None:
    assert TransportTimers.from_config(Config()) == TransportTimers()  # the defaults are the tuned ones
    timers = TransportTimers.from_config(load_config(["--setup-copies", "2"], {"SETUP_COPY_GAP_MS": "25",
                                                                               "DTLS_ROLE": "client"}))
    assert timers is not None and (timers.setup_copies, timers.copy_gap, timers.dtls_server) == (2, 0.025, False)
    for env, name in (({"SETUP_COPIES": "5"}, "SETUP_COPIES"), ({"SETUP_COPY_GAP_MS": "-1"}, "SETUP_COPY_GAP_MS"),
                      ({"DTLS_ROLE": "passive"}, "DTLS_ROLE")):
        with pytest.raises(ConfigError, match=name):
            load_config([], env)


async def test_the_peers_data_stands_in_for_its_lost_cookie_ack() -> None:
    """The association is the gateway's COOKIE-ECHO only (the browser's own is lost), and the
    browser's COOKIE-ACK is lost too. The browser is established and sends its OPEN: that tells
    the gateway the association is up, so its ACK and events go out at once, not after T1 resent
    the COOKIE-ECHO (0.25 s or more, doubling)."""
    echoes: list[float] = []

    def browser_loses(pc: RTCPeerConnection) -> None:
        assert pc.sctp is not None
        send, lost = pc.sctp._send_chunk, {"CookieEchoChunk", "CookieAckChunk"}

        async def send_chunk(chunk: Any) -> None:
            if type(chunk).__name__ in lost:
                lost.discard(type(chunk).__name__)  # the first of each
                return
            await send(chunk)

        pc.sctp._send_chunk = send_chunk  # type: ignore[method-assign]

    def count_echoes(pc: RTCPeerConnection) -> list[tuple[float, bytes]]:
        assert pc.sctp is not None
        send = pc.sctp._send_chunk

        async def send_chunk(chunk: Any) -> None:
            if type(chunk).__name__ == "CookieEchoChunk":
                echoes.append(time.monotonic())
            await send(chunk)

        pc.sctp._send_chunk = send_chunk  # type: ignore[method-assign]
        return on_the_wire(pc)

    result = await answered(TransportTimers(), wire=count_echoes, offerer_wire=browser_loses)
    try:
        assert result["channel"].readyState == "open"
        assert len(echoes) == 1, echoes  # never resent: the OPEN was taken as the COOKIE-ACK
        assert result["opened"] < 0.25, result["opened"]
    finally:
        await close(result)
