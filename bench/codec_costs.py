"""Per-frame costs of the gateway's codec path against aiortc's, FEC against concealment, and the
receive jitter buffer in simulation.

    python bench/codec_costs.py [--seconds 6] [--only costs|quality|jitter]

Costs are µs per 20 ms frame (best of 5 runs over real pt-BR speech, the same run for every row,
so compare the ratios; this machine is shared and noisy). Quality: one lost packet rebuilt from
the next packet's FEC vs libopus concealment, SNR against the loss-free decode, and whole-clip
PESQ (wide band) at random loss when the ``pesq`` package is importable. Jitter: the buffer
driven by simulated arrivals (no sockets), delay = time a received packet is held.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from aiortc.codecs.opus import OpusDecoder as AiortcDecoder
from aiortc.codecs.opus import OpusEncoder as AiortcEncoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtp import RtpPacket
from av import AudioFrame

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.media.audio_receiver import RtpMicSource
from gateway.media.inbound_audio import mono
from gateway.media.jitter_buffer import JitterBuffer, Origin
from gateway.media.opus import OpusDecoder, OpusEncoder, _candidates, has_inband_fec, libopus, version
from gateway.media.outbound_codec import OpusPacketizer
from gateway.media.resample import Upsampler
from tests.audio_tools import DATA, read_wav
from tests.media.jitter_sim import drive

FRAME = 960


def speech(seconds: float) -> np.ndarray:
    pcm, _ = read_wav(DATA / "pt_br_dom_casmurro.wav")
    pcm = Upsampler().process(pcm)
    return np.resize(pcm, int(seconds * 48000))


def frames_of(pcm: np.ndarray) -> list[np.ndarray]:
    return [np.ascontiguousarray(pcm[i:i + FRAME]) for i in range(0, len(pcm) - FRAME + 1, FRAME)]


def per_frame_us(run: Callable[[], int], repeats: int = 5) -> float:
    """Best of ``repeats`` runs of ``run`` (which returns how many frames it did)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        count = run()
        best = min(best, (time.perf_counter() - start) / count * 1e6)
    return best


def audio_frame(pcm: np.ndarray, pts: int) -> AudioFrame:
    frame = AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate, frame.pts, frame.time_base = 48000, pts, fractions.Fraction(1, 48000)
    return frame


# --- costs ---------------------------------------------------------------------------------------


def costs(seconds: float) -> list[tuple[str, float]]:
    talk = frames_of(speech(seconds))
    silence = [np.zeros(FRAME, np.int16)] * len(talk)
    rows: list[tuple[str, float]] = []

    def aiortc_encode(frames: list[np.ndarray]) -> Callable[[], int]:
        def run() -> int:
            encoder = AiortcEncoder()
            for i, pcm in enumerate(frames):
                encoder.encode(audio_frame(pcm, i * FRAME))
            return len(frames)
        return run

    def ours_encode(frames: list[np.ndarray], **settings: Any) -> Callable[[], int]:
        def run() -> int:
            encoder = OpusEncoder(max_bandwidth="superwideband", **settings)
            for pcm in frames:
                encoder.encode(pcm)
            return len(frames)
        return run

    def packetizer(frames: list[np.ndarray]) -> Callable[[], int]:
        def run() -> int:
            packetize = OpusPacketizer()
            for i, pcm in enumerate(frames):
                packetize(pcm, i * FRAME)
            return len(frames)
        return run

    rows.append(("encode speech: aiortc (stereo 96 kbps, executor)", per_frame_us(aiortc_encode(talk))))
    rows.append(("encode speech: ours, complexity 5, 32 kbps + FEC", per_frame_us(ours_encode(talk))))
    rows.append(("encode speech: ours, complexity 1", per_frame_us(ours_encode(talk, complexity=1))))
    rows.append(("encode speech: OpusPacketizer → av.Packet", per_frame_us(packetizer(talk))))
    rows.append(("encode silence: aiortc", per_frame_us(aiortc_encode(silence))))
    rows.append(("encode silence: OpusPacketizer (settled silence reused)", per_frame_us(packetizer(silence))))

    packets = [bytes(p) for p in _encode_all(talk)]

    def aiortc_decode() -> int:
        decoder = AiortcDecoder()
        for i, payload in enumerate(packets):
            for frame in decoder.decode(JitterFrame(payload, i * FRAME)):
                mono(frame)  # what the stock path hands the mic pump
        return len(packets)

    def ours(method: str) -> Callable[[], int]:
        def run() -> int:
            decoder = OpusDecoder()
            for payload in packets:
                if method == "decode":
                    decoder.decode(payload)
                elif method == "fec":
                    decoder.decode_fec(payload)
                else:
                    decoder.conceal()
            return len(packets)
        return run

    rows.append(("decode: aiortc (stereo av.AudioFrame → mono)", per_frame_us(aiortc_decode)))
    rows.append(("decode: ours", per_frame_us(ours("decode"))))
    rows.append(("decode_fec: ours", per_frame_us(ours("fec"))))
    rows.append(("conceal: ours", per_frame_us(ours("conceal"))))
    rows.append(("has_inband_fec (LBRR flag parse)", per_frame_us(lambda: sum(1 for p in packets if has_inband_fec(p))
                                                              and len(packets))))

    def jitter_buffer() -> int:
        buffer = JitterBuffer()
        for i, payload in enumerate(packets):
            buffer.push(i % 65536, i * FRAME, payload, i * 0.02)
            buffer.pop(i * 0.02)
            buffer.deadline()
        return len(packets)

    rows.append(("jitter buffer push+pop+deadline (in order)", per_frame_us(jitter_buffer)))
    rows.append(("own receive path per packet (tap → buffer → decode → MicFrame)",
                 asyncio.run(_receive_path_us(packets))))
    for path in _candidates():
        try:
            lib = libopus(path)
        except OSError:
            continue
        rows.append((f"encode speech, complexity 5: {version(lib)} ({Path(path).name})",
                     per_frame_us(ours_encode(talk, library=lib))))
    return rows


def _encode_all(frames: list[np.ndarray]) -> list[bytes]:
    encoder = OpusEncoder(loss_percent=10, max_bandwidth="superwideband")
    return [encoder.encode(pcm) for pcm in frames]


async def _receive_path_us(packets: list[bytes]) -> float:
    """A real RTCRtpReceiver (its transport never started) with the tap installed."""
    receiver = RTCRtpReceiver("audio", SimpleNamespace(state="new"))  # type: ignore[arg-type]
    receiver._RTCRtpReceiver__codecs[111] = RTCRtpCodecParameters(  # type: ignore[attr-defined]
        mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)
    best = float("inf")
    for _ in range(5):
        source = RtpMicSource.attach(receiver)
        rtp = [RtpPacket(payload_type=111, sequence_number=i % 65536, timestamp=i * FRAME, ssrc=1234, payload=p)
               for i, p in enumerate(packets)]
        start = time.perf_counter()
        for packet in rtp:
            await receiver._handle_rtp_packet(packet, 0)
            await source.recv()
        best = min(best, (time.perf_counter() - start) / len(rtp) * 1e6)
        source.stop()
    return best


# --- quality -------------------------------------------------------------------------------------


def quality(seconds: float) -> list[tuple[str, float]]:
    talk = frames_of(speech(min(seconds, 10)))
    encoder = OpusEncoder(loss_percent=20, max_bandwidth="superwideband")
    packets = [encoder.encode(f) for f in talk]
    reference_decoder = OpusDecoder()
    reference = [reference_decoder.decode(p) for p in packets]
    fec, plc = [], []
    for lost in range(10, len(packets) - 2, 3):
        if np.abs(reference[lost]).max() < 2000:
            continue
        a, b = OpusDecoder(), OpusDecoder()
        for p in packets[lost - 8:lost]:
            a.decode(p)
            b.decode(p)
        fec.append(_snr(reference[lost], a.decode_fec(packets[lost + 1])))
        plc.append(_snr(reference[lost], b.conceal()))
    rows = [("one lost speech frame, SNR dB: FEC from the next packet (median)", statistics.median(fec)),
            ("one lost speech frame, SNR dB: concealment (median)", statistics.median(plc))]
    try:
        from pesq import pesq  # optional: pip install pesq (builds from source)
    except ImportError:
        return rows + [("PESQ skipped: the pesq package is not installed", float("nan"))]
    clean = _to_16k(np.concatenate(talk))
    rows.append(("PESQ-WB without loss (the codec alone)", pesq(16000, clean.astype(float), _to_16k(
        np.concatenate(reference))[:len(clean)].astype(float), "wb")))
    for loss in (0.05, 0.1, 0.2):
        lost = np.random.default_rng(1).random(len(packets)) < loss
        for mode in ("fec", "plc"):
            decoder, out = OpusDecoder(), []
            for i, payload in enumerate(packets):
                if not lost[i]:
                    out.append(decoder.decode(payload))
                elif mode == "fec" and i + 1 < len(packets) and not lost[i + 1]:
                    out.append(decoder.decode_fec(packets[i + 1]))
                else:
                    out.append(decoder.conceal())
            degraded = _to_16k(np.concatenate(out))
            n = min(len(clean), len(degraded))
            rows.append((f"PESQ-WB at {loss:.0%} random loss, {mode.upper()}",
                         pesq(16000, clean[:n].astype(float), degraded[:n].astype(float), "wb")))
    return rows


def _snr(reference: np.ndarray, test: np.ndarray) -> float:
    error = np.sum((test.astype(float) - reference) ** 2)
    return float(10 * np.log10(np.sum(reference.astype(float) ** 2) / max(error, 1.0)))


def _to_16k(pcm: np.ndarray) -> np.ndarray:
    import av

    resampler = av.AudioResampler(format="s16", layout="mono", rate=16000)
    frame = AudioFrame.from_ndarray(pcm.reshape(1, -1).astype(np.int16), format="s16", layout="mono")
    frame.sample_rate = 48000
    out = [f.to_ndarray()[0] for f in resampler.resample(frame)] + [f.to_ndarray()[0] for f in resampler.resample(None)]
    return np.concatenate(out)


# --- jitter buffer in simulation ------------------------------------------------------------------


def jitter(seconds: float) -> list[tuple[str, float]]:
    rows = []
    count = int(seconds / 0.02)
    for label, kwargs in (("clean", {}), ("±20 ms jitter, order kept", {"jitter": 0.04}),
                          ("±20 ms jitter, reordering", {"jitter": 0.04, "fifo": False}),
                          ("10% loss, ±20 ms jitter", {"jitter": 0.04, "loss": 0.1}),
                          ("20% loss, ±20 ms jitter", {"jitter": 0.04, "loss": 0.2})):
        buffer = JitterBuffer()
        out = _simulate(buffer, _arrivals(count, **kwargs))
        stats = buffer.stats
        origins = [r.origin for r in out]
        rows.append((f"{label}: delay p50 / p95 ms",
                     f"{stats.delay_percentile(50) * 1000:.1f} / {stats.delay_percentile(95) * 1000:.1f}"))
        rows.append((f"{label}: frames out/sent, FEC/concealed/inserted",
                     f"{len(out) / count:.3f}, {origins.count(Origin.FEC)} / {stats.concealed} / {stats.inserted}"))
    return rows  # type: ignore[return-value]


def _arrivals(count: int, jitter: float = 0.0, fifo: bool = True, loss: float = 0.0) -> list[tuple[float, int]]:
    rng = random.Random(7)
    out, last = [], 0.0
    for i in range(count):
        when = i * 0.02 + 0.05 + rng.uniform(0, jitter)
        if fifo:
            when = last = max(when, last)
        if rng.random() >= loss:
            out.append((when, i))
    return sorted(out)


def _simulate(buffer: JitterBuffer, arrivals: list[tuple[float, int]]) -> list[Any]:
    out: list[Any] = []
    end = arrivals[-1][0]
    steps = drive(buffer, arrivals, lambda seq, now: buffer.push(seq % 65536, seq * FRAME, b"", now))
    for now, releases in steps:
        out += [r for r in releases if not (r.inserted and now > end)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="speech per cost run (and jitter sim × 10)")
    parser.add_argument("--only", choices=("costs", "quality", "jitter"))
    args = parser.parse_args()
    print(f"libopus: {version()}")
    sections = {"costs": (costs, "µs/frame"), "quality": (quality, ""), "jitter": (lambda s: jitter(s * 10), "")}
    for name, (run, unit) in sections.items():
        if args.only and args.only != name:
            continue
        print(f"\n{name}\n{'-' * 78}")
        for label, value in run(args.seconds):
            shown = f"{value:8.1f}  {unit}" if isinstance(value, float) else str(value)
            print(f"{label:<72} {shown}")


if __name__ == "__main__":
    main()
