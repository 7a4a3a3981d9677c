"""NACK for the mic is answered when an offer has it (and the setting allows), and the lossy-link
settings (RED, NACK, set-up timers) reach the gateway's peer through Config."""

from __future__ import annotations

import re
from typing import Any

import pytest

from gateway.config import Config, ConfigError, load_config
from gateway.webrtc.nack_sdp import libwebrtc_offer, offered_nack
from gateway.webrtc.transport_timers import TransportTimers
from tests.netbed.call_client import offer_nack
from tests.peers import ClientPeer

OFFER = ("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 63\r\na=mid:0\r\na=rtpmap:111 opus/48000/2\r\n"
         "a=rtcp-fb:111 transport-cc\r\na=rtcp-fb:111 nack\r\na=rtpmap:63 red/48000/2\r\n"
         "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=rtcp-fb:96 nack\r\n")


def test_plain_nack_for_the_opus_payload_type_of_the_audio_section_is_found() -> None:
    assert offered_nack(OFFER, "0", 111)
    assert not offered_nack(OFFER, "0", 63)  # not offered for that payload type
    assert not offered_nack(OFFER.replace("a=rtcp-fb:111 nack\r\n", ""), "0", 111)  # video's nack is not audio's
    assert not offered_nack(OFFER.replace("111 nack", "111 nack pli"), "0", 111)
    assert offered_nack(OFFER.replace("111 nack", "* nack"), "0", 111)


def like_chromium(sdp: str) -> str:
    """An aiortc offer with libwebrtc's ``a=rtcp-fb:<opus> transport-cc`` (and still no NACK)."""
    return re.sub(r"(?m)^(a=rtpmap:(\d+) opus/48000/2\r?)$", "\\1\na=rtcp-fb:\\2 transport-cc\r", sdp)


async def answer_to(base_url: str, nack: bool, chromium: bool = False) -> str:
    peer = ClientPeer(base_url)
    set_local = peer.pc.setLocalDescription

    async def offering_nack(description: Any) -> None:
        if nack:
            description = type(description)(sdp=offer_nack(description.sdp), type=description.type)
        if chromium:
            description = type(description)(sdp=like_chromium(description.sdp), type=description.type)
        await set_local(description)

    peer.pc.setLocalDescription = offering_nack  # type: ignore[method-assign]
    try:
        await peer.connect()
        assert peer.pc.remoteDescription is not None
        return peer.pc.remoteDescription.sdp
    finally:
        await peer.close()


def opus_nack_lines(answer: str) -> list[str]:
    opus = next(line.split(":")[1].split()[0] for line in answer.splitlines() if "opus/48000" in line)
    return [line for line in answer.splitlines() if line.startswith(f"a=rtcp-fb:{opus} nack")]


async def test_an_offer_with_nack_gets_it_answered(make_gateway: Any) -> None:
    gateway = await make_gateway()
    assert opus_nack_lines(await answer_to(gateway.url, nack=True)) != []
    assert opus_nack_lines(await answer_to(gateway.url, nack=False)) == []  # aiortc's own offer has none


async def test_mic_nack_off_answers_without_it(make_gateway: Any) -> None:
    gateway = await make_gateway(mic_nack=False)
    assert opus_nack_lines(await answer_to(gateway.url, nack=True)) == []


def test_libwebrtc_offers_are_told_by_transport_cc_on_opus() -> None:
    assert libwebrtc_offer(OFFER, "0", 111)
    assert not libwebrtc_offer(OFFER.replace("a=rtcp-fb:111 transport-cc\r\n", ""), "0", 111)
    assert "a=rtcp-fb:111 transport-cc" in like_chromium("a=rtpmap:111 opus/48000/2\r\n")


async def test_mic_nack_browsers_answers_libwebrtc_unoffered(make_gateway: Any) -> None:
    gateway = await make_gateway(mic_nack_browsers=True)
    assert opus_nack_lines(await answer_to(gateway.url, nack=False, chromium=True)) != []  # as Chromium offers
    assert opus_nack_lines(await answer_to(gateway.url, nack=False)) == []  # not libwebrtc: not asked
    off = await make_gateway(mic_nack_browsers=False)
    assert opus_nack_lines(await answer_to(off.url, nack=False, chromium=True)) == []
    no_nack = await make_gateway(mic_nack_browsers=True, mic_nack=False)  # MIC_NACK off wins
    assert opus_nack_lines(await answer_to(no_nack.url, nack=False, chromium=True)) == []


def test_lossy_link_settings_from_environment_and_flags() -> None:
    config = load_config(["--red", "false", "--mic-nack-max-wait-ms", "60"],
                         {"MIC_NACK": "off", "FAST_SETUP_TIMERS": "false", "SCTP_RTO_INITIAL_MS": "500",
                          "SCTP_BACKOFF_MAX_MS": "2000"})
    assert (config.red, config.mic_nack, config.mic_nack_max_wait_ms) == (False, False, 60)
    assert load_config(["--mic-nack-browsers", "false"], {}).mic_nack_browsers is False
    assert load_config([], {"MIC_NACK_BROWSERS": "off"}).mic_nack_browsers is False
    assert TransportTimers.from_config(config) is None  # aiortc's own timers
    assert TransportTimers.from_config(Config()) == TransportTimers()  # the defaults are the tuned ones
    timers = TransportTimers.from_config(load_config([], {"DTLS_RESEND_INITIAL_MS": "100", "ICE_RTO_MS": "300"}))
    assert timers is not None and (timers.dtls_initial, timers.ice_rto, timers.sctp_rto_initial) == (0.1, 0.3, 0.25)


@pytest.mark.parametrize(("env", "name"), [({"DTLS_RESEND_INITIAL_MS": "10"}, "DTLS_RESEND_INITIAL_MS"),
                                            ({"DTLS_RESEND_MAX_MS": "100"}, "DTLS_RESEND_MAX_MS"),
                                            ({"SCTP_RTO_MIN_MS": "400"}, "SCTP_RTO_INITIAL_MS"),
                                            ({"MIC_NACK_MAX_WAIT_MS": "900"}, "MIC_NACK_MAX_WAIT_MS"),
                                            ({"RED": "maybe"}, "RED")])
def test_bad_values_are_refused_at_start_naming_the_setting(env: dict[str, str], name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_config([], env)
