"""Inbound audio over a lossy, jittery network: the gateway's receive path against stock aiortc.

    python bench/lossy.py [--loss 0 5 10 20] [--delay 50] [--jitter 20]   (root: network namespaces)

For each loss rate, one call per receive path says ~10 s of pt-BR speech (Opus with in-band
FEC, as Chrome sends once asked) across the netbed (nftables drops, TUN relay delay ± jitter).
Prints: frames delivered upstream per 20 ms frame the browser sent, how they were made (decoded,
rebuilt from FEC, concealed), the receive path's held-back delay p50/p95, and the word error
rate of Whisper on what the upstream received, against its transcript of the clean original.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.engine.models import WHISPER_BASE, default_cache_dir, materialize  # noqa: E402
from gateway.engine.stt import Transcriber  # noqa: E402
from tests.audio_tools import DATA, read_wav  # noqa: E402
from tests.netbed.bed import NetBed  # noqa: E402
from tests.netbed.scenario import run_call  # noqa: E402

WAVS = [DATA / "pt_br_capital_brasil.wav", DATA / "pt_br_dom_casmurro.wav", DATA / "pt_br_historia.wav"]


def words(text: str) -> list[str]:
    return re.sub(r"[^\w\s]", " ", text.lower()).split()


def wer(reference: list[str], hypothesis: list[str]) -> float:
    d = np.arange(len(hypothesis) + 1)
    for i, ref in enumerate(reference, 1):
        previous, d[0] = d[0], i
        for j, hyp in enumerate(hypothesis, 1):
            previous, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, previous + (ref != hyp))
    return float(d[-1]) / max(1, len(reference))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--loss", type=int, nargs="+", default=[0, 5, 10, 20])
    parser.add_argument("--delay", type=float, default=50)
    parser.add_argument("--jitter", type=float, default=20)
    args = parser.parse_args()
    whisper = Transcriber(materialize(WHISPER_BASE, default_cache_dir()), 2)
    reference = [w for path in WAVS for w in words(whisper.transcribe(read_wav(path)[0], "pt"))]
    print(f"reference transcript ({len(reference)} words): {' '.join(reference)}\n")
    print("| loss | path | delivered / sent | decoded / FEC / concealed | held back p50 / p95 ms | WER |")
    print("|---|---|---|---|---|---|")
    for loss in args.loss:
        for path in ("gateway", "aiortc"):
            with NetBed(seed=loss) as bed, tempfile.TemporaryDirectory() as results:
                bed.set_delay(args.delay, jitter_ms=args.jitter)
                bed.set_loss(loss)
                summary, audio, client = run_call(bed, Path(results), WAVS, receive_path=path)
                pcm, _ = read_wav(audio)
                error = wer(reference, words(whisper.transcribe(pcm, "pt")))
            frames = summary["mic_frames"]
            sent = client["frames_sent"]
            made = [frames.get(k, 0) for k in ("decoded", "fec", "concealed")]
            delay = summary["jitter_buffer_ms"]
            held = f"{delay['p50']:.0f} / {delay['p95']:.0f}" if delay else "-"
            print(f"| {loss}% | {path} | {100 * sum(made) / sent:.1f}% | {' / '.join(map(str, made))} | {held} | "
                  f"{100 * error:.0f}% |", flush=True)


if __name__ == "__main__":
    main()
