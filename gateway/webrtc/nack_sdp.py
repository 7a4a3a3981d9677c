"""NACK for the mic's Opus when the offer has it: answered, so the receive path may ask.

aiortc lists no RTCP feedback for audio codecs, so it answers an offer's ``a=rtcp-fb:<opus> nack``
with nothing, and its receiver sends NACKs for video only. A sender that offers NACK for audio
says it keeps its packets to resend them (aiortc's sender does for any NACK; libwebrtc's once
negotiated; Chromium does not offer it for Opus). :func:`accept_nack` adds the feedback to the
transceiver's negotiated Opus after the offer is applied, before the answer is made, so aiortc
writes ``a=rtcp-fb:<opus> nack`` into the answer; the receive path then asks
(:mod:`gateway.media.nack`).
"""

from __future__ import annotations

import re
from typing import Any

from aiortc.rtcrtpparameters import RTCRtcpFeedback

_RTCP_FB_NACK = re.compile(r"^a=rtcp-fb:(\d+|\*) nack\s*$")


def offered_nack(offer_sdp: str, mid: str | None, payload_type: int) -> bool:
    """Whether the audio section ``mid`` of the offer has plain ``nack`` feedback (not ``nack pli``)
    for ``payload_type`` (or for ``*``)."""
    for section in re.split(r"(?m)^(?=m=)", offer_sdp):
        lines = section.splitlines()
        if not lines or not lines[0].startswith("m=audio") or (mid is not None and f"a=mid:{mid}" not in lines):
            continue
        for line in lines:
            match = _RTCP_FB_NACK.match(line)
            if match and match.group(1) in (str(payload_type), "*"):
                return True
    return False


def accept_nack(transceiver: Any, offer_sdp: str) -> bool:
    """After ``setRemoteDescription(offer)``, before ``createAnswer``: answer the offer's NACK for
    the negotiated Opus; True if it had it."""
    opus = next((c for c in transceiver._codecs if c.mimeType.lower() == "audio/opus"), None)
    if opus is None or opus.payloadType is None or not offered_nack(offer_sdp, transceiver.mid, opus.payloadType):
        return False
    nack = RTCRtcpFeedback(type="nack")
    if nack not in opus.rtcpFeedback:
        opus.rtcpFeedback = [*opus.rtcpFeedback, nack]
    return True
