"""libopus through ctypes: round trips, FEC against concealment on real speech, encoder tuning."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.opus import OpusDecoder, OpusEncoder
from gateway.opus_sdp import request_opus_fec
from gateway.resample import Upsampler

from .audio_tools import DATA, pitch, read_wav, voiced


def speech_48k() -> np.ndarray:
    pcm, _ = read_wav(DATA / "pt_br_dom_casmurro.wav")
    return Upsampler().process(pcm)


def frames(pcm: np.ndarray) -> list[np.ndarray]:
    return [pcm[i:i + 960] for i in range(0, len(pcm) - 959, 960)]


def snr_db(reference: np.ndarray, test: np.ndarray) -> float:
    error = np.sum((test.astype(float) - reference) ** 2)
    return float(10 * np.log10(np.sum(reference.astype(float) ** 2) / max(error, 1.0)))


def test_a_tone_survives_with_its_pitch() -> None:
    encoder, decoder = OpusEncoder(bitrate=24000), OpusDecoder()
    signal = voiced(1.0, 200.0, 48000)
    out = np.concatenate([decoder.decode(encoder.encode(f)) for f in frames(signal)])
    assert len(out) == len(frames(signal)) * 960
    assert pitch(out[4800:], 48000) == pytest.approx(200.0, rel=0.02)


def test_fec_rebuilds_a_lost_frame_far_better_than_concealment() -> None:
    encoder = OpusEncoder(bitrate=32000, fec=True, loss_percent=20)
    packets = [encoder.encode(f) for f in frames(speech_48k())]
    reference_decoder = OpusDecoder()
    reference = [reference_decoder.decode(p) for p in packets]
    fec_snr, plc_snr = [], []
    for lost in range(10, len(packets) - 2, 4):
        if np.abs(reference[lost]).max() < 2000:
            continue  # a pause: nothing to recover
        with_fec, with_plc = OpusDecoder(), OpusDecoder()
        for packet in packets[:lost]:
            with_fec.decode(packet)
            with_plc.decode(packet)
        fec_snr.append(snr_db(reference[lost], with_fec.decode_fec(packets[lost + 1])))
        plc_snr.append(snr_db(reference[lost], with_plc.conceal()))
    assert len(fec_snr) >= 10
    assert np.median(fec_snr) > np.median(plc_snr) + 6


def test_encoder_settings_change_the_stream() -> None:
    speech = frames(speech_48k())
    sizes = {}
    for bitrate in (16000, 40000):
        encoder = OpusEncoder(bitrate=bitrate)
        sizes[bitrate] = np.mean([len(encoder.encode(f)) for f in speech])
    assert sizes[40000] > 1.8 * sizes[16000]
    encoder = OpusEncoder()
    encoder.set_packet_loss_perc(250)
    assert encoder.loss_percent == 100


def test_answer_asks_for_mono_fec() -> None:
    answer = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 opus/48000/2\r\na=sendrecv\r\n"
    munged = request_opus_fec(answer)
    assert "a=fmtp:96 minptime=10;useinbandfec=1;stereo=0;sprop-stereo=0;maxaveragebitrate=40000" in munged
    assert munged.index("a=rtpmap:96") < munged.index("a=fmtp:96") < munged.index("a=sendrecv")
    existing = answer.replace("a=sendrecv", "a=fmtp:96 usedtx=0;useinbandfec=0\r\na=sendrecv")
    merged = request_opus_fec(existing)
    assert merged.count("a=fmtp:96") == 1 and "usedtx=0" in merged and "useinbandfec=1" in merged
