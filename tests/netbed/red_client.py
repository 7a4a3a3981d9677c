"""An aiortc client that offers and sends RED the way Chromium does, for calls across the bed.

aiortc cannot offer ``audio/red``, so the offer gets Chromium's lines added (``a=rtpmap:63
red/48000/2``, ``a=fmtp:63 111/111``), and once the gateway's answer puts RED first, the same
:func:`gateway.webrtc.red_audio.accept_red` the gateway uses makes the client's sender send PT 63
with the :class:`~gateway.webrtc.red_audio.RedPacketizer`'s payloads (distance 1, as Chromium).
The gateway's RED stream to this client is heard through the gateway's own receive path
(:class:`~gateway.media.audio_receiver.RtpMicSource`), since aiortc's decoder knows no RED.
"""

from __future__ import annotations

import re
from typing import Any

from aiortc import RTCSessionDescription

from gateway.webrtc.red_audio import RedPacketizer, accept_red

RED_TYPE = 63


def offer_red(sdp: str, red_type: int = RED_TYPE) -> str:
    """Chromium's RED lines added to the (first) audio section of an aiortc offer, after Opus."""
    match = re.search(r"^a=rtpmap:(\d+) opus/48000/2\r?$", sdp, re.M)
    if match is None:
        return sdp
    opus = match.group(1)
    newline = "\r\n" if "\r\n" in sdp else "\n"
    lines = sdp.split(newline)
    out: list[str] = []
    for line in lines:
        if line.startswith("m=audio ") and str(red_type) not in line.split()[3:]:
            line = f"{line} {red_type}"
        out.append(line)
        if line == match.group(0).rstrip("\r"):
            out += [f"a=rtpmap:{red_type} red/48000/2", f"a=fmtp:{red_type} {opus}/{opus}"]
    return newline.join(out)


def use_red(pc: Any, packetizer: RedPacketizer) -> None:
    """Make ``pc`` (before its offer) offer RED, and send it once the answer accepts it."""
    create_offer = pc.createOffer
    set_remote = pc.setRemoteDescription

    async def create_red_offer() -> RTCSessionDescription:
        offer = await create_offer()
        return RTCSessionDescription(sdp=offer_red(offer.sdp), type=offer.type)

    async def set_remote_and_red(description: RTCSessionDescription) -> None:
        await set_remote(description)
        for transceiver in pc.getTransceivers():
            if transceiver.kind == "audio":
                negotiated = accept_red(transceiver, description.sdp)
                if negotiated is not None:
                    packetizer.enable(negotiated)  # distance 1: nothing here follows loss reports

    pc.createOffer = create_red_offer
    pc.setRemoteDescription = set_remote_and_red
