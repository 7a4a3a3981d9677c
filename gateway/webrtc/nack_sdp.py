"""NACK for the mic's Opus when the offer has it: answered, so the receive path may ask.

aiortc lists no RTCP feedback for audio codecs, so it answers an offer's ``a=rtcp-fb:<opus> nack``
with nothing, and its receiver sends NACKs for video only. A sender that offers NACK for audio
says it keeps its packets to resend them (aiortc's sender does for any NACK; libwebrtc's once
negotiated). Chromium does not offer it for Opus, but its sender follows the answer: with
``MIC_NACK_BROWSERS`` the gateway answers NACK unoffered to libwebrtc's offers (their Opus has
``transport-cc`` feedback), so Chromium resends what is lost when RED cannot carry it (a burst).
:func:`accept_nack` adds the feedback to the transceiver's negotiated Opus after the offer is
applied, before the answer is made, so aiortc writes ``a=rtcp-fb:<opus> nack`` into the answer;
the receive path then asks (:mod:`gateway.media.nack`).
"""

from __future__ import annotations

import re
from typing import Any

from aiortc.rtcrtpparameters import RTCRtcpFeedback

_RTCP_FB_NACK = re.compile(r"^a=rtcp-fb:(\d+|\*) nack\s*$")
_RTCP_FB_TRANSPORT_CC = re.compile(r"^a=rtcp-fb:(\d+|\*) transport-cc\s*$")


def offered_nack(offer_sdp: str, mid: str | None, payload_type: int, feedback: re.Pattern[str] = _RTCP_FB_NACK) -> bool:
    """Whether the audio section ``mid`` of the offer has plain ``nack`` feedback (not ``nack pli``)
    for ``payload_type`` (or for ``*``); or the ``feedback`` given."""
    for section in re.split(r"(?m)^(?=m=)", offer_sdp):
        lines = section.splitlines()
        if not lines or not lines[0].startswith("m=audio") or (mid is not None and f"a=mid:{mid}" not in lines):
            continue
        for line in lines:
            match = feedback.match(line)
            if match and match.group(1) in (str(payload_type), "*"):
                return True
    return False


def libwebrtc_offer(offer_sdp: str, mid: str | None, payload_type: int) -> bool:
    """Whether the offer's Opus has ``transport-cc`` feedback: libwebrtc's mark (Chromium, Edge,
    Safari), whose audio sender resends on NACK once the answer has it."""
    return offered_nack(offer_sdp, mid, payload_type, _RTCP_FB_TRANSPORT_CC)


def accept_nack(transceiver: Any, offer_sdp: str, unoffered: bool = False) -> bool:
    """After ``setRemoteDescription(offer)`` (and :func:`~gateway.webrtc.red_audio.accept_red`),
    before ``createAnswer``: answer NACK for the negotiated Opus (and the RED over it) if the offer
    has it for Opus, or with ``unoffered`` if the offer comes from libwebrtc (``MIC_NACK_BROWSERS``:
    Chromium offers none, yet its audio sender keeps its packets and resends them once the
    answer's Opus has NACK; other senders may not, and are not asked). True if answered."""
    opus = next((c for c in transceiver._codecs if c.mimeType.lower() == "audio/opus"), None)
    if opus is None or opus.payloadType is None:
        return False
    mid, opus_type = transceiver.mid, opus.payloadType
    if not offered_nack(offer_sdp, mid, opus_type) and not (unoffered and libwebrtc_offer(offer_sdp, mid, opus_type)):
        return False
    nack = RTCRtcpFeedback(type="nack")
    for codec in transceiver._codecs:
        if codec.mimeType.lower() in ("audio/opus", "audio/red") and nack not in codec.rtcpFeedback:
            codec.rtcpFeedback = [*codec.rtcpFeedback, nack]
    return True
