"""Runs inside the bed's server namespace: the gateway plus the fake upstream.

Prints ``{"url": …}`` once serving (``--stock-timers``, ``--no-red`` and ``--no-nack`` put back
what the gateway did before, through its settings ``FAST_SETUP_TIMERS``, ``RED`` and ``MIC_NACK``);
on SIGTERM writes the ended calls' summaries, each mic's NACK counts (``mic_nack.json``) and the
audio the upstream received (one WAV per session) under ``--results``, then exits.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import json
import signal
import wave
from pathlib import Path

from gateway.media.audio_receiver import RtpMicSource
from gateway.media.nack import NackPolicy
from tests.conftest import gateway_config, start_gateway
from tests.fake_upstream import Behaviour, FakeRealtimeServer


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", required=True)
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--receive-path", default="gateway")
    parser.add_argument("--reply-seconds", type=float, default=1.0)
    parser.add_argument("--stock-timers", action="store_true",
                        help="aiortc's own DTLS/SCTP timers (the figures before transport_timers)")
    parser.add_argument("--no-red", action="store_true", help="answer Opus only, as before RED")
    parser.add_argument("--no-nack", action="store_true", help="never answer or send NACK for the mic")
    parser.add_argument("--nack-max-wait-ms", type=int, default=None)
    parser.add_argument("--nack-guard-ms", type=float, default=None,
                        help="the NACK policy's max_guard (0: ask as the gap opens, as before the reorder guard)")
    args = parser.parse_args()
    if args.nack_guard_ms is not None:
        NackPolicy.__init__ = functools.partialmethod(  # type: ignore[method-assign]
            NackPolicy.__init__, max_guard=args.nack_guard_ms / 1000)
    settings: dict[str, object] = {"fast_setup_timers": not args.stock_timers, "red": not args.no_red,
                                   "mic_nack": not args.no_nack}
    if args.nack_max_wait_ms is not None:
        settings["mic_nack_max_wait_ms"] = args.nack_max_wait_ms
    nack_counts = record_nack_counts()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with FakeRealtimeServer(Behaviour(reply_seconds=args.reply_seconds)) as fake:
        gateway, runner = await start_gateway(gateway_config(upstream_url=fake.url, host=args.host,
                                                             receive_path=args.receive_path, **settings))
        print(json.dumps({"url": gateway.url.replace("127.0.0.1", args.host)}), flush=True)
        await stop.wait()
        await gateway.state.calls.close()
        args.results.mkdir(parents=True, exist_ok=True)
        for index, session in enumerate(fake.sessions):
            with wave.open(str(args.results / f"upstream-{index}.wav"), "wb") as out:
                out.setnchannels(1)
                out.setsampwidth(2)
                out.setframerate(24000)
                out.writeframes(session.received.tobytes())
        summaries = [dataclasses.asdict(summary) for _, summary in gateway.state.calls.recent]
        (args.results / "calls.json").write_text(json.dumps(summaries))
        (args.results / "mic_nack.json").write_text(json.dumps(nack_counts))
        await runner.cleanup()


def record_nack_counts() -> list[dict[str, object]]:
    """Each mic source's NACK and jitter-buffer figures as it stops (a call's summary does not carry
    them; its ``mic_frames`` count inserted frames as concealed)."""
    counts: list[dict[str, object]] = []
    stop = RtpMicSource.stop

    def stop_and_record(source: RtpMicSource) -> None:
        if not source._ended:
            stats = source.buffer.stats
            counts.append({"nacked": stats.nacked, "resent": stats.resent, "late": stats.late,
                           "lost": source.buffer.packets_lost, "wait_ms": round(source.buffer.wait * 1000),
                           "concealed": stats.concealed, "inserted": stats.inserted, "fec": stats.fec,
                           "red": stats.red, "duplicate": stats.duplicate,
                           "guard_ms": round(source.buffer.nack.guard(source.buffer._now) * 1000) if source.buffer.nack else 0,
                           "answered": source.buffer.nack.answered if source.buffer.nack is not None else 0,
                           "resend_ms": sorted(round(d * 1000) for _, d in source.buffer.nack._repairs)
                           if source.buffer.nack is not None else []})
        stop(source)

    RtpMicSource.stop = stop_and_record  # type: ignore[method-assign]
    return counts


if __name__ == "__main__":
    asyncio.run(main())
