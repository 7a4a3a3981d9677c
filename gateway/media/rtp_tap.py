"""The RTP tap under :class:`~gateway.media.audio_receiver.RtpMicSource`: aiortc's receiver hands
its packets to the gateway's own receive path instead of its jitter buffer and decoder thread
(split from :mod:`gateway.media.audio_receiver`).

The tap relies on aiortc 1.16 internals (name-mangled attributes of ``RTCRtpReceiver`` and the
way ``RTCDtlsTransport`` calls it); :func:`check_aiortc_internals` verifies them before a call
uses them and says how to fall back (``RECEIVE_PATH=aiortc``) if aiortc changed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

from aiortc import clock as aiortc_clock
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpreceiver import RTCRtpReceiver, StreamStatistics
from aiortc.rtp import RtpPacket
from pylibsrtp import Error as SrtpError
from pylibsrtp import Session as SrtpSession

from . import red
from .rtp import replace_rtp_handler

logger = logging.getLogger(__name__)

_RECEIVER_STATE = ("codecs", "remote_streams", "active_ssrc", "started", "stop_decoder", "kind")  # name-mangled


class ReceivePathError(RuntimeError):
    """aiortc's internals are not what this receive path was written against."""


@cache
def check_aiortc_internals() -> None:
    """Fail loudly, once, if aiortc no longer routes RTP, stops and reports the way we rely on."""
    routes = {
        RTCDtlsTransport._handle_rtp_data: "_handle_rtp_packet",  # packets reach receiver._handle_rtp_packet
        RTCDtlsTransport._recv_next: "_rx_srtp",  # and are decrypted by its _rx_srtp (gated: GatedSrtp)
        RTCRtpReceiver.stop: "_RTCRtpReceiver__stop_decoder",  # hang-up ends the stream through it
        RTCRtpReceiver._handle_disconnect: "_RTCRtpReceiver__stop_decoder",
        RTCRtpReceiver._handle_rtcp_packet: "_RTCRtpReceiver__stop_decoder",  # RTCP BYE
        RTCRtpReceiver.receive: "_RTCRtpReceiver__started",  # the decoder thread starts once
        RTCRtpReceiver._run_rtcp: "_RTCRtpReceiver__remote_streams",  # receiver reports come from it
        StreamStatistics.add: "packets_received",
    }
    problems = [f"{function.__qualname__} no longer uses {name}" for function, name in routes.items()
                if name not in function.__code__.co_names]
    if problems:
        _fail(problems)


def check_receiver(receiver: RTCRtpReceiver) -> None:
    missing = [name for name in _RECEIVER_STATE if not hasattr(receiver, f"_RTCRtpReceiver__{name}")]
    if missing:
        _fail([f"RTCRtpReceiver has no __{name}" for name in missing])


def _fail(problems: list[str]) -> None:
    raise ReceivePathError(f"aiortc changed ({'; '.join(problems)}): the own receive path is written for "
                           "aiortc==1.16.0; pin it or set RECEIVE_PATH=aiortc")


def tap(receiver: RTCRtpReceiver, on_packet: Callable[[RtpPacket, Sequence[red.Frame]], None],
         on_stopped: Callable[[], None], *, permits: Callable[[bytes], bool] = lambda _: True,
         follows: Callable[[int], bool] = lambda _: True) -> None:
    """Route ``receiver``'s RTP packets to ``on_packet`` and retire aiortc's decoder thread.

    The packets come through :func:`~gateway.media.rtp.replace_rtp_handler`. What stays from
    aiortc's version, for audio: the enabled check, the SSRC activity (``getSynchronizationSources``),
    the codec check and the per-SSRC statistics its RTCP task turns into receiver reports (loss,
    jitter) for the browser. What goes: its jitter buffer and the queue to its decoder thread.
    aiortc ends a receiver's stream (hang-up, DTLS closed, RTCP BYE) through the name-mangled
    ``__stop_decoder``; an instance attribute of that name lets the source end too.

    ``permits`` sees each SRTP packet before its transport decrypts it (from the first packet
    on: see :class:`GatedSrtp`); ``follows`` each decrypted one before aiortc keeps anything
    about its SSRC.
    """
    codecs = receiver._RTCRtpReceiver__codecs  # type: ignore[attr-defined]
    streams = receiver._RTCRtpReceiver__remote_streams  # type: ignore[attr-defined]
    active = receiver._RTCRtpReceiver__active_ssrc  # type: ignore[attr-defined]
    stop_decoder = receiver._RTCRtpReceiver__stop_decoder  # type: ignore[attr-defined]
    warned: set[int] = set()
    gated = False

    async def handle_rtp_packet(packet: RtpPacket, arrival_time_ms: int) -> None:
        nonlocal gated
        if not gated:  # the transport delivering packets has its SRTP session by now
            gated = True
            GatedSrtp.install(receiver.transport, permits)
        codec = codecs.get(packet.payload_type)
        if not receiver._enabled or codec is None or not follows(packet.ssrc):
            return
        active[packet.ssrc] = aiortc_clock.current_datetime()
        if packet.ssrc not in streams:
            streams[packet.ssrc] = StreamStatistics(codec.clockRate)
        streams[packet.ssrc].add(packet)
        if codec.mimeType.lower() == "audio/red":  # the browser sends RED: gateway/webrtc/red_audio.py
            split = red.split_packet(packet, codec.parameters)
            if split is not None:
                on_packet(*split)
            return
        if codec.mimeType.lower() != "audio/opus":
            if packet.payload_type not in warned:
                warned.add(packet.payload_type)
                logger.warning("mic packets in %s ignored: the own receive path decodes Opus only", codec.mimeType)
            return
        on_packet(packet, ())

    def stop_decoder_and_stream() -> None:
        stop_decoder()
        on_stopped()

    replace_rtp_handler(receiver, lambda _aiortcs: handle_rtp_packet)
    receiver._RTCRtpReceiver__stop_decoder = stop_decoder_and_stream  # type: ignore[attr-defined]
    if receiver._RTCRtpReceiver__started:  # type: ignore[attr-defined]
        stop_decoder()  # its track gets end-of-stream; nothing reads it
        return
    receive = receiver.receive

    async def receive_then_retire_decoder(parameters: Any) -> None:
        await receive(parameters)
        stop_decoder()

    receiver.receive = receive_then_retire_decoder  # type: ignore[method-assign]


class GatedSrtp:
    """A DTLS transport's inbound SRTP session behind the mic source's gate (``permits``): a refused
    packet is dropped as undecryptable (aiortc logs it at DEBUG) before libsrtp decrypts it or
    creates a stream for its SSRC."""

    def __init__(self, session: SrtpSession, permits: Callable[[bytes], bool]) -> None:
        self._session = session
        self._permits = permits

    @classmethod
    def install(cls, transport: Any, permits: Callable[[bytes], bool]) -> None:
        session = getattr(transport, "_rx_srtp", None)
        if session is not None and not isinstance(session, cls):
            transport._rx_srtp = cls(session, permits)

    def unprotect(self, packet: bytes) -> bytes:
        if not self._permits(packet):
            raise SrtpError("refused by the mic's RTP gate")
        return self._session.unprotect(packet)

    def __getattr__(self, name: str) -> Any:  # unprotect_rtcp, protect…: the session's own
        return getattr(self._session, name)
