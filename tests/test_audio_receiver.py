"""The gateway's own receive path between two real aiortc peers, with packets dropped on purpose."""

from __future__ import annotations

import asyncio
import random

import numpy as np
import pytest
from aiortc import RTCPeerConnection

from gateway.audio_receiver import RtpMicSource
from gateway.inbound_audio import MicFrame, TrackMicSource
from gateway.outbound_codec import OpusPacketizer
from gateway.resample import Upsampler

from .audio_tools import DATA, read_wav
from .peers import MicTrack


async def receive(loss: float, *, own_path: bool, seconds: float = 4.0) -> tuple[list[MicFrame], np.ndarray, object]:
    """Send speech (Opus with in-band FEC) from one peer to another that drops ``loss`` of the RTP."""
    speech, _ = read_wav(DATA / "pt_br_dom_casmurro.wav")
    sent = np.concatenate((Upsampler().process(speech), np.zeros(48000, np.int16)))
    packetizer = OpusPacketizer()
    packetizer.encoder.set_packet_loss_perc(20)
    sender, receiver_pc = RTCPeerConnection(), RTCPeerConnection()
    mic = MicTrack(packetizer)
    sender.addTrack(mic)
    sources: list = []
    rng = random.Random(42)

    def on_track(track) -> None:  # type: ignore[no-untyped-def]
        transceiver = next(t for t in receiver_pc.getTransceivers() if t.receiver.track is track)
        receiver = transceiver.receiver
        source = RtpMicSource.attach(track, receiver) if own_path else TrackMicSource(track)
        handler = receiver._handle_rtp_packet

        async def lossy(packet, arrival_time_ms):  # type: ignore[no-untyped-def]
            if rng.random() >= loss:
                await handler(packet, arrival_time_ms)

        receiver._handle_rtp_packet = lossy
        sources.append(source)

    receiver_pc.on("track", on_track)
    await sender.setLocalDescription(await sender.createOffer())
    await receiver_pc.setRemoteDescription(sender.localDescription)
    await receiver_pc.setLocalDescription(await receiver_pc.createAnswer())
    await sender.setRemoteDescription(receiver_pc.localDescription)
    frames: list[MicFrame] = []
    try:
        while not sources:
            await asyncio.sleep(0.01)
        mic.say(sent)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while loop.time() < deadline:
            try:
                frames.append(await asyncio.wait_for(sources[0].recv(), deadline - loop.time()))
            except asyncio.TimeoutError:
                break
    finally:
        await sender.close()
        await receiver_pc.close()
    return frames, sent, sources[0]


@pytest.mark.parametrize("loss", [0.0, 0.1])
async def test_own_path_keeps_a_continuous_cadence_under_loss(loss: float) -> None:
    frames, _, source = await receive(loss, own_path=True)
    assert len(frames) >= 190  # 4 s at 50 frames/s, minus connection set-up
    stats = source.buffer.stats
    if loss:
        assert stats.fec > 0.5 * stats.lost  # most losses rebuilt from FEC, the rest concealed
        assert 0.05 < stats.lost / (stats.decoded + stats.lost) < 0.15
    else:
        assert stats.lost == 0
    # Nothing is held back: a frame leaves when its packet arrives.
    assert stats.delay_percentile(50) < 0.005


async def test_aiortc_path_loses_cadence_under_the_same_loss() -> None:
    """The reference the own path is measured against (aiortc's fixed-capacity buffer, no FEC)."""
    own, _, _ = await receive(0.1, own_path=True)
    stock, _, _ = await receive(0.1, own_path=False)
    assert len(own) > len(stock) + 10
