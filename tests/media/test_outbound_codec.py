"""The assistant's voice encoded by the gateway: mono voice Opus with FEC, decoded by a stock
aiortc receiver, and FEC that follows the loss the receiver reports."""

from __future__ import annotations

import asyncio
import fractions
import random
from typing import Any

import numpy as np
import pytest
from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamError

from gateway.media.inbound_audio import mono
from gateway.media.opus import OpusDecoder, has_inband_fec
from gateway.media.outbound_codec import SILENCE_SETTLE_FRAMES, LossEstimator, OpusPacketizer, follow_loss_reports
from gateway.media.resample import Upsampler
from tests.audio_tools import DATA, pitch, read_wav, rms, voiced
from tests.peers import MicTrack


def test_loss_estimate_rises_at_once_and_decays_slowly() -> None:
    estimator = LossEstimator()
    assert estimator.update(0) == LossEstimator.FLOOR  # clean: still a little redundancy
    assert estimator.update(51) == 20  # 20 % reported: follow at once
    decay = [estimator.update(0) for _ in range(3)]
    assert decay == sorted(decay, reverse=True) and decay[-1] > LossEstimator.FLOOR
    assert estimator.update(255) == LossEstimator.CEILING


def test_settled_silence_is_not_encoded_and_speech_after_it_is_intact() -> None:
    packetizer = OpusPacketizer()
    decoder = OpusDecoder()
    speech = voiced(0.6, 220, 48000)
    signal = np.concatenate((speech, np.zeros(48000, np.int16), speech))
    out = []
    for i in range(0, len(signal), 960):
        packet = packetizer.packet(signal[i:i + 960])
        assert packet.pts == i and packet.time_base == fractions.Fraction(1, 48000)
        out.append(decoder.decode(bytes(packet)))
    assert packetizer.frames_silent == 50 - SILENCE_SETTLE_FRAMES  # one second of silence, not encoded
    heard = np.concatenate(out)
    assert rms(heard[48000 * 1: 48000 * 1 + 24000]) < 5  # silence stays silent
    second = heard[-len(speech) + 4800:]
    assert pitch(second, 48000) == pytest.approx(220, rel=0.02) and rms(second) > 0.5 * rms(speech)


def speech() -> np.ndarray:
    pcm, _ = read_wav(DATA / "pt_br_dom_casmurro.wav")
    return Upsampler().process(pcm)


def envelope(pcm: np.ndarray) -> np.ndarray:
    return np.sqrt((pcm[: len(pcm) // 960 * 960].astype(np.float64).reshape(-1, 960) ** 2).mean(axis=1))


async def call(loss: float, seconds: float) -> tuple[OpusPacketizer, list[bytes], list[Any]]:
    """A sender that speaks through :class:`OpusPacketizer` to a stock aiortc receiver whose
    network drops ``loss`` of the packets; returns the packets and frames that got through."""
    packetizer = OpusPacketizer()
    sender, receiver = RTCPeerConnection(), RTCPeerConnection()
    mic = MicTrack(packetizer)
    sender.addTrack(mic)
    payloads: list[bytes] = []
    frames: list[Any] = []
    rng = random.Random(5)
    tasks: list[asyncio.Task[None]] = []

    async def listen(track: Any) -> None:
        try:
            while True:
                frames.append(await track.recv())
        except MediaStreamError:
            pass

    def on_track(track: Any) -> None:
        rtp_receiver = next(t.receiver for t in receiver.getTransceivers() if t.receiver.track is track)
        handler = rtp_receiver._handle_rtp_packet

        async def lossy_network(packet: Any, arrival_time_ms: int) -> None:
            if rng.random() >= loss:
                payloads.append(packet.payload)
                await handler(packet, arrival_time_ms)

        rtp_receiver._handle_rtp_packet = lossy_network
        tasks.append(asyncio.create_task(listen(track)))

    receiver.on("track", on_track)
    await sender.setLocalDescription(await sender.createOffer())
    await receiver.setRemoteDescription(sender.localDescription)
    await receiver.setLocalDescription(await receiver.createAnswer())
    await sender.setRemoteDescription(receiver.localDescription)
    tasks.append(asyncio.create_task(follow_loss_reports(sender.getSenders()[0], packetizer.encoder, interval=0.5)))
    try:
        mic.say(speech())
        await asyncio.sleep(seconds)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await sender.close()
        await receiver.close()
    return packetizer, payloads, frames


async def test_a_stock_aiortc_receiver_hears_mono_voice_opus_with_fec() -> None:
    packetizer, payloads, frames = await call(0.0, 3.0)
    assert len(payloads) > 120
    assert all(p[0] & 0x4 == 0 for p in payloads)  # mono in the TOC, not aiortc's stereo
    talking = [p for p in payloads if len(p) > 40]
    assert len(talking) > 80
    assert np.mean([len(p) for p in talking]) * 8 / 0.02 < 40000  # a voice bitrate, not 96 kbps
    assert sum(map(has_inband_fec, talking)) > 0.8 * len(talking)  # FEC rides along with speech
    sent, heard = envelope(speech()), envelope(np.concatenate([mono(f) for f in frames]))
    best = max(np.corrcoef(sent, heard[lag:lag + len(sent)])[0, 1] for lag in range(len(heard) - len(sent)))
    assert best > 0.9  # the receiver hears the same speech, syllable by syllable


async def test_the_encoder_adds_redundancy_when_the_receiver_reports_loss() -> None:
    packetizer, payloads, _ = await call(0.2, 5.0)
    assert packetizer.encoder.loss_percent >= 12  # from the receiver's RTCP reports of ~20 %
