"""The gateway's own receive path between two real aiortc peers over loopback, with packets
dropped on purpose (seeded) between the network and the receiver."""

from __future__ import annotations

import asyncio
import gc
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamError

from gateway.media.audio_receiver import ReceivePathError, RtpMicSource
from gateway.media.inbound_audio import MicFrame, MicSource, TrackMicSource
from gateway.media.outbound_codec import OpusPacketizer
from gateway.media.resample import Upsampler
from tests.audio_tools import DATA, read_wav
from tests.peers import MicTrack


@dataclass
class Link:
    sender: RTCPeerConnection
    receiver: RTCPeerConnection
    mic: MicTrack
    source: MicSource
    receiver_obj: Any
    frames: list[tuple[float, MicFrame]] = field(default_factory=list)  # (recv time, frame)


def speech() -> np.ndarray:
    pcm, _ = read_wav(DATA / "pt_br_dom_casmurro.wav")
    return np.concatenate((Upsampler().process(pcm), np.zeros(48000, np.int16)))


@pytest.fixture(autouse=True)
def no_full_collection_while_measuring() -> Iterator[None]:
    """These tests time frames to the millisecond in the test process itself, whose heap (every
    earlier test's objects) a full collection would scan for ~200 ms; the gateway freezes its own
    start-up heap the same way (``gateway.cli``)."""
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


async def connect(loss: float, *, own_path: bool = True, seed: int = 42, attach_late: bool = False,
                  outage: tuple[float, float] | None = None) -> Link:
    """A sender that talks Opus with in-band FEC (as Chrome does once asked) to a receiver whose
    network drops ``loss`` of the RTP packets before aiortc sees them. ``attach_late``: take the
    receiver over only once media flows (aiortc's decoder thread already running). ``outage``:
    (start, end) in monotonic time during which every packet is lost."""
    packetizer = OpusPacketizer()
    packetizer.encoder.set_packet_loss_perc(20)
    sender, receiver_pc = RTCPeerConnection(), RTCPeerConnection()
    mic = MicTrack(packetizer)
    sender.addTrack(mic)
    attached: asyncio.Future[tuple[MicSource, Any]] = asyncio.get_running_loop().create_future()
    rng = random.Random(seed)

    async def on_track(track: Any) -> None:
        receiver = next(t.receiver for t in receiver_pc.getTransceivers() if t.receiver.track is track)
        if attach_late:
            while not receiver._RTCRtpReceiver__started:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
        source = RtpMicSource.attach(track, receiver) if own_path else TrackMicSource(track, receiver)
        handler = receiver._handle_rtp_packet

        async def lossy_network(packet: Any, arrival_time_ms: int) -> None:
            cut = outage is not None and outage[0] <= time.monotonic() < outage[1]
            if rng.random() >= loss and not cut:
                await handler(packet, arrival_time_ms)

        receiver._handle_rtp_packet = lossy_network
        attached.set_result((source, receiver))

    receiver_pc.on("track", on_track)
    await sender.setLocalDescription(await sender.createOffer())
    await receiver_pc.setRemoteDescription(sender.localDescription)
    await receiver_pc.setLocalDescription(await receiver_pc.createAnswer())
    await sender.setRemoteDescription(receiver_pc.localDescription)
    source, receiver = await asyncio.wait_for(attached, 10)
    return Link(sender, receiver_pc, mic, source, receiver)


async def listen(link: Link, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            frame = await asyncio.wait_for(link.source.recv(), remaining)
        except TimeoutError:
            return
        link.frames.append((time.monotonic(), frame))


async def close(link: Link) -> None:
    link.source.stop()
    await link.sender.close()
    await link.receiver.close()


def envelope(pcm: np.ndarray, frame: int = 960) -> np.ndarray:
    """RMS of each 20 ms (``frame`` samples: 960 at 48 kHz, 480 at 24 kHz)."""
    frames = pcm[: len(pcm) // frame * frame].astype(np.float64).reshape(-1, frame)
    return np.sqrt((frames ** 2).mean(axis=1))


def best_correlation(sent: np.ndarray, heard: np.ndarray) -> float:
    """Correlation of the 20 ms loudness envelopes (48 kHz sent, 24 kHz heard), at the best alignment."""
    a, b = envelope(sent), envelope(heard, 480)
    return max(np.corrcoef(a, b[lag:lag + len(a)])[0, 1] for lag in range(len(b) - len(a) + 1))


@pytest.mark.parametrize("loss", [0.0, 0.1])
async def test_own_path_delivers_fifty_frames_a_second_under_loss(loss: float) -> None:
    sent = speech()  # read and resampled before listening: inside the window it stalled the loop the frames are timed on
    link = await connect(loss)
    try:
        listening = asyncio.create_task(listen(link, 3.8))
        await asyncio.sleep(0.3)  # connected and flowing
        link.mic.say(sent)
        await listening
        decoder_threads = [t for t in threading.enumerate() if t.name == "audio-decoder"]
        stats = link.source.stats()  # type: ignore[attr-defined]
    finally:
        await close(link)
    assert not decoder_threads  # aiortc's decoder thread for this receiver was retired
    times = [when for when, _ in link.frames]
    assert len(times) >= 170
    per_second = np.histogram(times, bins=np.arange(times[0], times[-1], 1.0))[0]
    assert per_second.min() >= 45, per_second  # a continuous cadence, losses included
    assert max(np.diff(times)) < 0.1
    delays = [when - frame.received_at for when, frame in link.frames]
    assert np.percentile(delays, 95) < 0.04  # frames leave as packets arrive, not 80 ms later
    assert {(frame.rate, len(frame.pcm)) for _, frame in link.frames} == {(24000, 480)}  # ready for the upstream
    heard = np.concatenate([frame.pcm for _, frame in link.frames])
    assert best_correlation(sent[: 48000 * 2], heard) > 0.9  # the same speech, syllable by syllable
    if loss:
        assert 0.05 < stats.loss < 0.16
        assert stats.frames_fec > stats.frames_concealed  # most losses rebuilt from FEC
        voiced = int((envelope(sent) > 300).sum())  # libopus adds FEC to active speech only
        assert stats.fec_packets > 0.7 * voiced * (1 - loss)
    else:
        assert stats.packets_lost == 0 and stats.frames_concealed == 0


async def test_an_outage_is_bridged_on_the_frame_clock() -> None:
    start = time.monotonic()
    link = await connect(0.0, outage=(start + 1.5, start + 2.5))
    try:
        await listen(link, 3.5 - (time.monotonic() - start))
    finally:
        await close(link)
    during = [f for when, f in link.frames if start + 1.6 <= when < start + 2.5]
    after = [f for when, f in link.frames if when >= start + 2.6]
    assert len(during) >= 40 and all(f.origin == "concealed" for f in during)  # 50 frames/s, nothing heard
    assert after and all(f.origin == "decoded" for f in after)
    assert len([f for when, f in link.frames if when >= start + 2.5]) < 60  # no backlog burst after it


async def test_taking_over_a_receiver_that_already_runs() -> None:
    link = await connect(0.0, attach_late=True)
    try:
        assert any(t.name == "audio-decoder" for t in threading.enumerate()) is False
        link.mic.say(speech())
        await listen(link, 2.0)
    finally:
        await close(link)
    assert len(link.frames) >= 95 and link.frames[-1][1].origin == "decoded"


async def test_receiver_reports_still_tell_the_browser_about_loss() -> None:
    link = await connect(0.2, seed=3)
    try:
        link.mic.say(speech())
        await listen(link, 4.0)
        remote = [s for s in (await link.sender.getSenders()[0].getStats()).values() if s.type == "remote-inbound-rtp"]
        inbound = [s for s in (await link.receiver_obj.getStats()).values() if s.type == "inbound-rtp"]
    finally:
        await close(link)
    assert remote and remote[0].packetsLost > 10  # the sender learnt of the loss from our RTCP RR
    assert inbound and inbound[0].packetsReceived > 100


async def test_the_stream_ends_when_the_peer_hangs_up() -> None:
    link = await connect(0.0)
    try:
        await listen(link, 0.5)
        assert link.frames
        await link.sender.close()
        with pytest.raises(MediaStreamError):
            async with asyncio.timeout(10):
                while True:
                    await link.source.recv()
    finally:
        await close(link)


async def test_own_path_beats_aiortcs_under_the_same_loss() -> None:
    """The reference the own path is measured against: aiortc's fixed-capacity buffer, no FEC."""
    results = {}
    for own in (True, False):
        link = await connect(0.1, own_path=own)
        try:
            link.mic.say(speech())
            await listen(link, 3.0)
        finally:
            await close(link)
        delays = [when - frame.received_at for when, frame in link.frames]
        results[own] = (len(link.frames), float(np.median(delays)))
    assert results[True][0] > results[False][0] + 10  # aiortc drops frames after each loss
    assert results[True][1] < results[False][1] - 0.05  # and holds the rest 80 ms or more


async def test_a_receiver_that_is_not_aiortc_1_16s_fails_loudly() -> None:
    class Stranger:
        pass

    with pytest.raises(ReceivePathError, match="RECEIVE_PATH=aiortc"):
        RtpMicSource(Stranger())  # type: ignore[arg-type]
