"""The answer asks the browser for mono 20 ms Opus with in-band FEC, and peers still accept it."""

from __future__ import annotations

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import SessionDescription

from gateway.webrtc.opus_sdp import request_opus_fec
from tests.peers import MicTrack

WANTED = "minptime=10;useinbandfec=1;stereo=0;sprop-stereo=0;maxaveragebitrate=40000;maxplaybackrate=24000"


def fmtp_params(sdp: str, payload_type: str) -> dict[str, str]:
    line = next(line for line in sdp.splitlines() if line.startswith(f"a=fmtp:{payload_type} "))
    return dict(p.split("=", 1) for p in line.split(" ", 1)[1].split(";"))


def test_an_answer_without_fmtp_gets_one_after_its_rtpmap() -> None:
    answer = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 96 0\r\na=rtpmap:96 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\n" \
             "a=sendrecv\r\n"
    munged = request_opus_fec(answer)
    assert f"a=rtpmap:96 opus/48000/2\r\na=fmtp:96 {WANTED}\r\n" in munged
    assert "a=fmtp:0" not in munged  # only Opus
    assert munged.count("a=ptime:20") == 1 and munged.endswith("\r\n")


def test_existing_parameters_are_kept_and_ours_win() -> None:
    answer = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n" \
             "a=fmtp:111 usedtx=0;useinbandfec=0\r\na=ptime:60\r\n"
    munged = request_opus_fec(answer)
    params = fmtp_params(munged, "111")
    assert params["usedtx"] == "0" and params["useinbandfec"] == "1" and params["stereo"] == "0"
    assert munged.count("a=fmtp:111") == 1 and "a=ptime:60" not in munged and "a=ptime:20" in munged
    assert request_opus_fec(munged) == munged  # idempotent


def test_other_sections_are_untouched() -> None:
    answer = ("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n"
              "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=sctp-port:5000\r\n"
              "m=audio 9 UDP/TLS/RTP/SAVPF 109\r\na=rtpmap:109 opus/48000/2\r\n")
    munged = request_opus_fec(answer)
    video, application, audio = munged.split("m=")[1:]
    assert "fmtp" not in video and "ptime" not in video and "ptime" not in application
    assert f"a=fmtp:109 {WANTED}" in audio


async def test_a_real_aiortc_offerer_accepts_the_munged_answer() -> None:
    offerer, answerer = RTCPeerConnection(), RTCPeerConnection()
    try:
        offerer.addTrack(MicTrack())
        answerer.addTrack(MicTrack())
        await offerer.setLocalDescription(await offerer.createOffer())
        await answerer.setRemoteDescription(offerer.localDescription)
        await answerer.setLocalDescription(await answerer.createAnswer())
        munged = request_opus_fec(answerer.localDescription.sdp)
        assert "\r\n\r\n" not in munged  # no empty line (Chromium 156 refuses one)
        await offerer.setRemoteDescription(RTCSessionDescription(sdp=munged, type="answer"))
        audio = SessionDescription.parse(munged).media[0]
        opus = next(c for c in audio.rtp.codecs if c.mimeType.lower() == "audio/opus")
        assert opus.parameters["useinbandfec"] == 1 and opus.parameters["maxplaybackrate"] == 24000
        assert "a=ptime:20" in munged.split("m=audio")[1]
        assert offerer.signalingState == "stable"
    finally:
        await offerer.close()
        await answerer.close()
