"""Bursty loss without a network: the receive path's own parts on a simulated link, scored by Whisper.

    python bench/burst_sim.py [--seeds 0 1 2 3] [--loss 10] [--burst 3] [--jitter-ms 20]
                              [--distance 1] [--conceal plc zero fade2 drop2]

The bench passage (:mod:`bench.passage`, said as :mod:`tests.netbed.call_client` says it) is
encoded as Chromium sends it once asked for FEC (Opus 20 ms frames with in-band FEC at 10 %
expected loss, inside RED at ``--distance``), lost on a Gilbert–Elliott chain (``--loss`` %, mean
run ``--burst`` packets, one chain per seed), delayed 50 ms ± ``--jitter-ms`` (uniform, packets
overtaking one another as on the netbed relay), then split, buffered and decoded as
:class:`~gateway.media.audio_receiver.RtpMicSource` does (:class:`~gateway.media.jitter_buffer.JitterBuffer`,
:func:`~gateway.media.audio_receiver.decode_release`) and scored sentence by sentence
(:mod:`bench.lossy_score`). No sockets, no event loop: a seed gives the same frames every time,
so two receive paths (or concealments) can be compared on the very same losses, and many seeds
cost seconds each, where a netbed call costs a minute. Its WER tracks the netbed's (10 % in
bursts of 3: 6.6 % over 8 seeds here, 5.2 % over 5 netbed calls).

``--conceal`` tries what the frames nothing rebuilds are made of: ``plc`` (libopus, what the
gateway does), ``zero`` (silence), ``fadeN`` (libopus for the first N−1 frames of a run, then a
20 ms fade to silence), ``dropN`` (from the N-th frame of a run on, nothing: the stream shortens).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.lossy_score import Scorer, said  # noqa: E402
from bench.passage import passage_wav  # noqa: E402
from gateway.engine.models import WHISPER_BASE, default_cache_dir, materialize  # noqa: E402
from gateway.engine.stt import Transcriber  # noqa: E402
from gateway.media import red  # noqa: E402
from gateway.media.audio_budget import AudioBudget  # noqa: E402
from gateway.media.audio_receiver import decode_release  # noqa: E402
from gateway.media.jitter_buffer import JitterBuffer, Origin  # noqa: E402
from gateway.media.opus import OpusDecoder, has_inband_fec, packet_samples  # noqa: E402
from gateway.media.outbound_codec import OpusPacketizer  # noqa: E402
from gateway.media.resample import Upsampler  # noqa: E402
from tests.audio_tools import read_wav  # noqa: E402
from tests.media.jitter_sim import drive, push_red  # noqa: E402

OPUS = 111


def chromium_packets(pcm24: np.ndarray, distance: int) -> list[bytes]:
    """As the netbed's call client sends ``pcm24`` (:class:`OpusPacketizer`: FEC, settled silence)."""
    pcm = Upsampler().process(pcm24)
    opus = OpusPacketizer()
    opus.encoder.set_packet_loss_perc(10)
    wrapper = red.RedEncoder(OPUS, distance)
    return [wrapper.wrap(opus.payload(pcm[i:i + 960]), i) for i in range(0, len(pcm) - 959, 960)]


def gilbert_elliott(rng: random.Random, count: int, percent: float, burst: float) -> set[int]:
    leave = 1 / burst
    enter = percent / (100 - percent) * leave
    lost, bad = set(), False
    for seq in range(count):
        bad = rng.random() >= leave if bad else rng.random() < enter
        if bad:
            lost.add(seq)
    return lost


def conceal(pcm: np.ndarray, run: int, how: str) -> np.ndarray:
    """What the ``run``-th made-up frame in a row becomes (``pcm``: libopus's concealment)."""
    if how == "plc":
        return pcm
    if how == "zero":
        return pcm * 0
    start = int(how[4:])
    if how.startswith("fade") and run >= start:
        return (pcm * np.linspace(1, 0, len(pcm))).astype(np.int16) if run == start else pcm * 0
    if how.startswith("drop") and run >= start:
        return pcm[:0]
    return pcm


def receive(packets: list[bytes], seed: int, args: argparse.Namespace, how: str) -> tuple[np.ndarray, dict[str, int]]:
    rng = random.Random(seed)
    lost = gilbert_elliott(rng, len(packets), args.loss, args.burst)
    jitter = args.jitter_ms / 1000
    arrivals = sorted((i * 0.02 + 0.05 + rng.uniform(-jitter, jitter), i) for i in range(len(packets)) if i not in lost)
    buffer = JitterBuffer(budget=AudioBudget(0.2), duration=packet_samples, fec=has_inband_fec)
    decoder = OpusDecoder(24000)
    fmtp = {"/".join([str(OPUS)] * (args.distance + 1)): None}
    out: list[np.ndarray] = []
    run = 0
    for _, releases in drive(buffer, arrivals, lambda seq, now: push_red(buffer, packets[seq], seq, now, fmtp)):
        for release in releases:
            pcm = decode_release(decoder, release)
            run = run + 1 if release.origin is Origin.CONCEAL else 0
            out.append(conceal(pcm, run, how) if run else pcm)
    stats = buffer.stats
    counts = {"lost": len(lost), "decoded": stats.decoded, "red": stats.red, "fec": stats.fec,
              "concealed": stats.concealed, "inserted": stats.inserted,
              "held_p95_ms": round(1000 * stats.delay_percentile(95))}
    return np.concatenate(out), counts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--loss", type=float, default=10)
    parser.add_argument("--burst", type=float, default=3)
    parser.add_argument("--jitter-ms", type=float, default=20)
    parser.add_argument("--distance", type=int, default=1, choices=(0, 1, 2))
    parser.add_argument("--conceal", nargs="+", default=["plc"])
    args = parser.parse_args()
    whisper = Transcriber(materialize(WHISPER_BASE, default_cache_dir()), 2)
    speech = read_wav(passage_wav())[0]
    scorer = Scorer(lambda pcm: whisper.transcribe(pcm, "pt"), [speech])
    packets = chromium_packets(said([speech]), args.distance)
    print("| conceal | seed | lost | decoded / RED / FEC / concealed + inserted | held back p95 ms | WER |")
    print("|---|---|---|---|---|---|")
    for how in args.conceal:
        wers = []
        for seed in args.seeds:
            pcm, c = receive(packets, seed, args, how)
            wers.append(scorer.score(pcm).wer)
            print(f"| {how} | {seed} | {c['lost']} | {c['decoded']} / {c['red']} / {c['fec']} / {c['concealed']} + "
                  f"{c['inserted']} | {c['held_p95_ms']} | {100 * wers[-1]:.1f}% |", flush=True)
        print(f"| **{how}** | mean of {len(wers)} | | | | **{100 * statistics.mean(wers):.2f}%** |", flush=True)


if __name__ == "__main__":
    main()
