"""Inbound audio and call set-up over a lossy, jittery network: RED, FEC, no FEC, stock aiortc.

    python bench/lossy.py [--loss 0 10 20 30] [--modes random bursty] [--burst 3]
                          [--delay 50] [--jitter 20] [--setups 5]          (root: network namespaces)
                          [--runs 3] [--first-run 0] [--keep-audio DIR]
    python bench/lossy.py --rescore DIR/*.wav     (each recording scored twice, and the old way)

For each loss rate and loss mode (independent drops, or Gilbert–Elliott runs of ``--burst``
packets on average), ``--runs`` calls per sender/receiver pair say a 66-word pt-BR passage (~29 s,
:mod:`bench.passage`; ``--sentences`` for the three 27-word test WAVs of before) across the
netbed, loss in both directions (the client retransmits DTLS/SCTP on a browser's timers):

- ``red``: a Chromium-like sender (Opus with in-band FEC inside RED, distance 1), the gateway's
  receive path (RED answered);
- ``fec``: the same sender without RED, the gateway's receive path;
- ``no-fec``: aiortc's own encoder (no in-band FEC), the gateway's receive path;
- ``nack``: the same aiortc sender, offering ``a=rtcp-fb:<opus> nack`` (aiortc's sender answers
  NACKs from its RTP history): the gateway asks for lost packets again and waits for them
  (``MIC_NACK_MAX_WAIT_MS``); ``nack-ask``: asks, never waits (a resend only helps when reordered
  ahead of its frame's deadline);
- ``nack-eager``: ``nack`` without the reorder guard (asks as each gap opens, as before);
- ``red-nack``: ``red`` with NACK negotiated, as Chromium gets it from ``MIC_NACK_BROWSERS``
  (here the client offers it: the gateway answers NACK unoffered to libwebrtc's offers only); the
  client's aiortc sender resends the RED packets asked for, as Chromium's does
  (tests/browser/test_red.py checks that on the wire);
- ``aiortc``: the Chromium-like FEC sender into aiortc's stock receive path.

Prints frames delivered upstream per 20 ms frame sent, how they were made (decoded, rebuilt
from a RED copy, from FEC, concealed), the receive path's held-back delay p50/p95, and the word
error rate of Whisper on what the upstream received against its transcript of the clean original,
sentence by sentence (:mod:`bench.lossy_score`: nothing cut off by Whisper's 30 s window).
Then set-up times (offer → data channel open, p50 / max of ``--setups`` calls) at each random
loss rate, with aiortc's stock DTLS/SCTP timers and with ``gateway/webrtc/transport_timers.py``
(on both ends: the client stands in for a browser, whose timers are already fast).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.lossy_score import Scorer, wer, words  # noqa: E402
from bench.passage import passage_wav  # noqa: E402
from gateway.engine.models import WHISPER_BASE, default_cache_dir, materialize  # noqa: E402
from gateway.engine.stt import Transcriber  # noqa: E402
from tests.audio_tools import DATA, read_wav  # noqa: E402
from tests.netbed.bed import NetBed  # noqa: E402
from tests.netbed.scenario import run_call  # noqa: E402

SENTENCES = [DATA / "pt_br_capital_brasil.wav", DATA / "pt_br_dom_casmurro.wav", DATA / "pt_br_historia.wav"]
PATHS = {  # name → (receive path, client flags, gateway flags)
    "red": ("gateway", ["--red"], []),
    "fec": ("gateway", [], []),
    "no-fec": ("gateway", ["--sender", "aiortc"], []),
    "nack": ("gateway", ["--sender", "aiortc", "--offer-nack"], []),
    "nack-ask": ("gateway", ["--sender", "aiortc", "--offer-nack"], ["--nack-max-wait-ms", "0"]),
    "nack-eager": ("gateway", ["--sender", "aiortc", "--offer-nack"], ["--nack-guard-ms", "0"]),
    "red-nack": ("gateway", ["--red", "--offer-nack"], []),
    "aiortc": ("aiortc", [], []),
}


def lossy_bed(seed: int, loss: float, mode: str, args: argparse.Namespace) -> NetBed:
    bed = NetBed(seed=seed)
    bed.open()
    bed.set_delay(args.delay, jitter_ms=args.jitter)
    bed.set_loss(loss, burst=args.burst if mode == "bursty" else None)
    return bed


def one_call(args: argparse.Namespace, scorer: Scorer, seed: int, loss: float, mode: str, name: str) -> dict[str, Any]:
    """One call's figures, or ``{"failed": why}`` if its set-up failed."""
    receive_path, client_args, server_args = PATHS[name]
    bed = lossy_bed(seed, loss, mode, args)
    try:
        with tempfile.TemporaryDirectory() as results:
            summary, audio, client = run_call(bed, Path(results), args.wav, receive_path=receive_path,
                                              client_args=[*client_args, "--tuned-timers", "--reply-optional"],
                                              server_args=[*server_args, *args.gateway_arg])
            pcm, _ = read_wav(audio)
            score = scorer.score(pcm)
            if args.keep_audio is not None:
                args.keep_audio.mkdir(parents=True, exist_ok=True)
                shutil.copy(audio, args.keep_audio / f"{name}-{mode}-{loss:g}-{args.delay:g}ms-{seed}.wav")
    except AssertionError as exc:  # the call did not happen (set-up failed): say so, go on
        return {"failed": str(exc).splitlines()[-1][:80]}
    finally:
        bed.close()
    frames = summary["mic_frames"]
    delay = summary["jitter_buffer_ms"] or {"p50": 0.0, "p95": 0.0}
    return {"sent": client["frames_sent"], "made": [frames.get(k, 0) for k in ("decoded", "red", "fec", "concealed")],
            "nacked": summary["mic_nack"].get("nacked", 0), "repaired": summary["mic_nack"].get("resent", 0),
            "p50": delay["p50"], "p95": delay["p95"], "wer": score.wer,
            "lost_conc": summary["mic_nack"].get("concealed", 0), "inserted": summary["mic_nack"].get("inserted", 0)}


def audio_table(args: argparse.Namespace, scorer: Scorer) -> None:
    print("| loss | mode | path | delivered / sent | decoded / RED / FEC / concealed (for lost packets + inserted in stalls) "
          "| NACKed / resent in time | held back p50 / p95 ms | WER mean (runs) |")
    print("|---|---|---|---|---|---|---|---|")
    for loss in args.loss:
        for mode in args.modes if loss else ["random"]:
            for name in args.paths:
                calls = [one_call(args, scorer, int(loss * 10) + len(mode) + 1000 * run, loss, mode, name)
                         for run in range(args.first_run, args.first_run + args.runs)]
                failed = [c["failed"] for c in calls if "failed" in c]
                calls = [c for c in calls if "failed" not in c]
                if not calls:
                    print(f"| {loss:g}% | {mode} | {name} | call failed: {failed[0]} | | | | |", flush=True)
                    continue
                made = [sum(c["made"][i] for c in calls) // len(calls) for i in range(4)]
                delivered = sum(sum(c["made"]) for c in calls) / sum(c["sent"] for c in calls)
                nack = f"{sum(c['nacked'] for c in calls) // len(calls)} / {sum(c['repaired'] for c in calls) // len(calls)}"
                wers = [c["wer"] for c in calls]
                runs = f" ({' / '.join(f'{100 * w:.1f}' for w in wers)})" if len(wers) > 1 else ""
                note = f", {len(failed)} failed: {failed[0]}" if failed else ""
                split = (f" ({sum(c['lost_conc'] for c in calls) // len(calls)} + "
                         f"{sum(c['inserted'] for c in calls) // len(calls)})")
                print(f"| {loss:g}% | {mode} | {name} | {100 * delivered:.1f}% | {' / '.join(map(str, made))}{split} | {nack} | "
                      f"{max(c['p50'] for c in calls):.0f} / {max(c['p95'] for c in calls):.0f} | "
                      f"{100 * statistics.mean(wers):.1f}%{runs}{note} |", flush=True)


def setup_table(args: argparse.Namespace) -> None:
    print("\n| loss | timers | offer → connected p50 s | offer → data channel open p50 / max s |")
    print("|---|---|---|---|")
    for loss in args.loss:
        for timers, server_flags, client_flags in (("aiortc stock", ["--stock-timers"], []),
                                                   ("tuned", [], ["--tuned-timers"])):
            bed = lossy_bed(100 + int(loss), loss, "random", args)
            try:
                with tempfile.TemporaryDirectory() as results:
                    server = bed.python(bed.server, "tests.netbed.serve_gateway", "--host", bed.server.address,
                                        "--results", results, *server_flags)
                    url = json.loads(server.wait_for_line(r'^\{"url"', timeout=60).string)["url"]
                    connected, opened = [], []
                    for _ in range(args.setups):
                        client = bed.python(bed.client, "tests.netbed.call_client", "--url", url, "--setup-only",
                                            *client_flags)
                        if client.wait(timeout=90) != 0:
                            opened.append(float("inf"))
                            continue
                        setup = client.json_lines()[-1]["setup"]
                        connected.append(setup["connected_s"])
                        opened.append(setup["open_s"])
            finally:
                bed.close()
            print(f"| {loss:g}% | {timers} | {statistics.median(connected) if connected else float('nan'):.2f} | "
                  f"{statistics.median(opened):.2f} / {max(opened):.2f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--loss", type=float, nargs="+", default=[0, 10, 20, 30])
    parser.add_argument("--modes", nargs="+", choices=("random", "bursty"), default=["random", "bursty"])
    parser.add_argument("--burst", type=float, default=3.0, help="mean run of lost packets in bursty mode")
    parser.add_argument("--paths", nargs="+", choices=list(PATHS), default=list(PATHS))
    parser.add_argument("--runs", type=int, default=1, help="calls per row (WER: their mean; delay: the worst)")
    parser.add_argument("--first-run", type=int, default=0,
                        help="the bed's seeds follow the run's number: more runs of a row on other losses")
    parser.add_argument("--wav", type=Path, nargs="+", help="what the client says (default: bench/passage.py's)")
    parser.add_argument("--sentences", action="store_true", help="the three test sentences (27 words) instead")
    parser.add_argument("--gateway-arg", action="append", default=[],
                        help="more tests/netbed/serve_gateway.py flags, e.g. --gateway-arg=--nack-max-wait-ms=80")
    parser.add_argument("--delay", type=float, default=50)
    parser.add_argument("--jitter", type=float, default=20)
    parser.add_argument("--setups", type=int, default=5, help="set-ups per loss rate and timer choice (0: none)")
    parser.add_argument("--no-audio", action="store_true", help="only the set-up table")
    parser.add_argument("--keep-audio", type=Path, help="copy what each call's upstream received here")
    parser.add_argument("--rescore", type=Path, nargs="+",
                        help="only score these recordings (e.g. from --keep-audio), each twice, and the old way")
    args = parser.parse_args()
    if args.no_audio:
        args.setups = args.setups or 5
    else:
        args.wav = SENTENCES if args.sentences else args.wav or [passage_wav()]
        whisper = Transcriber(materialize(WHISPER_BASE, default_cache_dir()), 2)
        scorer = Scorer(lambda pcm: whisper.transcribe(pcm, "pt"), [read_wav(path)[0] for path in args.wav])
        print(f"reference transcript ({len(scorer.reference)} words in {len(scorer.sentences)} pieces): "
              f"{' '.join(scorer.reference)}\n")
        if args.rescore:
            rescore(scorer, whisper, args.wav, args.rescore)
            return
        audio_table(args, scorer)
    if args.setups:
        setup_table(args)


def rescore(scorer: Scorer, whisper: Transcriber, said: list[Path], recordings: list[Path]) -> None:
    """Each recording scored twice by sentence (must agree), and as one transcript of the first 30 s
    (how this bench scored before)."""
    whole = [w for path in said for w in words(whisper.transcribe(read_wav(path)[0], "pt"))]
    print("| recording | by sentence, twice | same words | one 30 s window (before) | speech began at s |")
    print("|---|---|---|---|---|")
    for path in recordings:
        pcm, _ = read_wav(path)
        same, one, two = scorer.check_repeatable(pcm)
        before = wer(whole, words(whisper.transcribe(pcm, "pt")))
        print(f"| {path.name} | {100 * one:.1f}% / {100 * two:.1f}% | {same} | {100 * before:.1f}% | "
              f"{scorer.score(pcm).lag_s + 1.5:.2f} |", flush=True)

if __name__ == "__main__":
    main()
