"""RED (RFC 2198) both ways with browsers that offer it, on top of an aiortc that does not know it.

aiortc 1.16 has no ``audio/red`` codec, so it answers Chromium's ``red/48000/2`` offer with Opus
only. :func:`accept_red` puts RED back, first, into the audio transceiver's negotiated codecs
after the offer is applied and before the answer is made. One list drives all three places:

- the answer (aiortc writes ``a=rtpmap:63 red/48000/2`` and ``a=fmtp:63 111/111`` from it): a
  browser sends with the first codec of the answer, so it sends RED;
- the receiver's payload types (PT 63 reaches the receive path, which unpacks it:
  :mod:`gateway.media.red`);
- the sender: aiortc sends every packet with the first codec's payload type, and
  :class:`RedPacketizer` hands it RED payloads. aiortc has no encoder for ``audio/red``; the
  sender only ever *packs* our pre-encoded packets, so it gets an encoder that only packs.

Peers that don't offer RED (aiortc clients, Firefox without it) get plain Opus, as before.
:func:`check_red_internals` verifies, once, the aiortc internals this relies on.
"""

from __future__ import annotations

import fractions
import logging
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from aiortc.codecs.opus import OpusEncoder as AiortcOpusEncoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpsender import RTCRtpSender
from av.packet import Packet

from ..core.audio_format import WEBRTC_RATE
from ..media.outbound_codec import OpusPacketizer
from ..media.red import RedEncoder, RedPolicy

logger = logging.getLogger(__name__)
TIME_BASE = fractions.Fraction(1, WEBRTC_RATE)
_RTPMAP = re.compile(r"^a=rtpmap:(\d+) (red|opus)/48000(?:/(\d+))?\s*$", re.IGNORECASE)
_FMTP = re.compile(r"^a=fmtp:(\d+) (\d+)(?:/(\d+))*\s*$")


class RedInternalsError(RuntimeError):
    """aiortc's sender no longer works the way RED sending relies on."""


@cache
def check_red_internals() -> None:
    """The sender must pick its payload type from ``codecs[0]``, keep its encoder in
    ``__encoder`` (created only when unset) and pack pre-encoded packets with ``pack``."""
    problems = []
    if "_RTCRtpSender__encoder" not in RTCRtpSender._next_encoded_frame.__code__.co_names:
        problems.append("RTCRtpSender._next_encoded_frame no longer uses __encoder")
    if "pack" not in RTCRtpSender._next_encoded_frame.__code__.co_names:
        problems.append("RTCRtpSender._next_encoded_frame no longer packs pre-encoded packets")
    if not hasattr(AiortcOpusEncoder, "pack"):
        problems.append("aiortc's OpusEncoder has no pack()")
    if problems:
        raise RedInternalsError(f"aiortc changed ({'; '.join(problems)}): RED is written for aiortc==1.16.0")


@dataclass(frozen=True)
class RedNegotiated:
    red_type: int  # the RED payload type (63 from Chromium)
    opus_type: int  # the Opus payload type inside it


def offered_red(offer_sdp: str, mid: str | None, opus_type: int) -> int | None:
    """The payload type of a ``red/48000/2`` whose blocks are all ``opus_type`` in the audio
    section ``mid`` of the offer (RFC 2198 fmtp ``111/111``), or None."""
    for section in re.split(r"(?m)^(?=m=)", offer_sdp):
        lines = section.splitlines()
        if not lines or not lines[0].startswith("m=audio") or (mid is not None and f"a=mid:{mid}" not in lines):
            continue
        red = {int(m.group(1)) for line in lines if (m := _RTPMAP.match(line)) and m.group(2).lower() == "red"}
        for line in lines:
            match = _FMTP.match(line)
            if match and int(match.group(1)) in red:
                blocks = line.split(" ", 1)[1].strip().split("/")
                if all(b == str(opus_type) for b in blocks):
                    return int(match.group(1))
    return None


def accept_red(transceiver: Any, offer_sdp: str) -> RedNegotiated | None:
    """After ``setRemoteDescription(offer)``, before ``createAnswer``: if the offer has RED over the
    negotiated Opus, make RED the transceiver's first codec and return the payload types."""
    codecs: list[RTCRtpCodecParameters] = transceiver._codecs
    opus = next((c for c in codecs if c.mimeType.lower() == "audio/opus"), None)
    if opus is None or opus.payloadType is None:
        return None
    red_type = offered_red(offer_sdp, transceiver.mid, opus.payloadType)
    if red_type is None:
        return None
    check_red_internals()
    red = RTCRtpCodecParameters(mimeType="audio/red", clockRate=WEBRTC_RATE, channels=2, payloadType=red_type,
                                parameters={f"{opus.payloadType}/{opus.payloadType}": None})
    transceiver._codecs = [red, *[c for c in codecs if c.mimeType.lower() != "audio/red"]]
    transceiver.sender._RTCRtpSender__encoder = AiortcOpusEncoder.__new__(AiortcOpusEncoder)  # packs only
    return RedNegotiated(red_type, opus.payloadType)


class RedPacketizer:
    """``(pcm, pts) → av.Packet`` for the outbound track: the wrapped :class:`OpusPacketizer`'s
    payload, as RED once :meth:`enable` was called, with the distance and Opus bitrate that
    :meth:`follow` picks from the browser's loss reports."""

    def __init__(self, opus: OpusPacketizer, policy: RedPolicy | None = None) -> None:
        self.opus = opus
        self.policy = policy or RedPolicy()
        self.red: RedEncoder | None = None

    def enable(self, negotiated: RedNegotiated) -> None:
        self.red = RedEncoder(negotiated.opus_type, self.policy.choice.distance)
        self._apply()

    def follow(self, fraction_lost: int) -> None:
        """One RTCP receiver report's ``fraction lost`` (0–255)."""
        if self.red is None:
            return
        before = self.policy.choice
        self.policy.update(fraction_lost)
        if self.policy.choice != before:
            logger.info("browser reports %.1f%% loss: RED distance %d, Opus at %d bps", fraction_lost * 100 / 256,
                        self.policy.choice.distance, self.policy.choice.opus_bitrate)
            self._apply()

    def _apply(self) -> None:
        assert self.red is not None
        self.red.distance = self.policy.choice.distance
        self.opus.encoder.set_bitrate(self.policy.choice.opus_bitrate)

    def __call__(self, pcm: np.ndarray, pts: int) -> Packet:
        payload = self.opus.payload(pcm)
        if self.red is not None:
            payload = self.red.wrap(payload, pts)
        packet = Packet(payload)
        packet.pts = pts
        packet.time_base = TIME_BASE
        return packet
