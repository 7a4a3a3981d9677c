"""Set-up retransmission timers (gateway/webrtc/transport_timers.py) between two real aiortc peers
over loopback, with the datagrams each side sends dropped or delayed on purpose."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiortc import RTCPeerConnection

from gateway.webrtc.transport_timers import (
    DtlsFlightResender,
    TransportTimers,
    check_timer_internals,
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
