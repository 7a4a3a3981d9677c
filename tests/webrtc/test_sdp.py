"""The answer the gateway sends is one every browser parses, and offers get cheap sanity limits."""

from __future__ import annotations

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from gateway.core.errors import BadRequest
from gateway.webrtc.opus_sdp import request_opus_fec
from gateway.webrtc.sdp import check_offer, tidy_answer
from tests.peers import MicTrack


async def test_the_answer_has_one_sha256_fingerprint_and_no_empty_line() -> None:
    """Chromium 156 refuses aiortc's three fingerprints and a trailing empty line."""
    offerer, answerer = RTCPeerConnection(), RTCPeerConnection()
    try:
        offerer.addTrack(MicTrack())
        offerer.createDataChannel("oai-events")
        answerer.addTrack(MicTrack())
        await offerer.setLocalDescription(await offerer.createOffer())
        await answerer.setRemoteDescription(offerer.localDescription)
        await answerer.setLocalDescription(await answerer.createAnswer())
        raw = request_opus_fec(answerer.localDescription.sdp)
        assert raw.count("a=fingerprint:") > 2  # what aiortc gives: several per section
        answer = tidy_answer(raw)
        lines = answer.split("\r\n")
        assert lines[-1] == "" and "" not in lines[:-1]
        fingerprints = [line for line in lines if line.startswith("a=fingerprint:")]
        assert fingerprints and all(line.startswith("a=fingerprint:sha-256 ") for line in fingerprints)
        assert len(fingerprints) == answer.count("m=")  # one per media section
        await offerer.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        assert offerer.signalingState == "stable"
    finally:
        await offerer.close()
        await answerer.close()


@pytest.mark.parametrize("offer, reason", [
    ("hello", "start with 'v=0'"),
    ("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n", "no audio section"),
    ("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=ice-ufrag:x\r\n", "no DTLS fingerprint"),
    ("v=0\r\n" + "a=x\r\n" * 1001, "more than 1000 lines"),
])
def test_offers_that_cannot_be_a_webrtc_call_are_refused_with_the_reason(offer: str, reason: str) -> None:
    with pytest.raises(BadRequest, match=reason):
        check_offer(offer)
