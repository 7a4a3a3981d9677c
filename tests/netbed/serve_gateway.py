"""Runs inside the bed's server namespace: the gateway plus the fake upstream.

Prints ``{"url": …}`` once serving (``--stock-timers`` and ``--no-red`` put back what the
gateway did before, for benchmarks); on SIGTERM writes the ended calls' summaries and the audio
the upstream received (one WAV per session) under ``--results``, then exits.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import signal
import wave
from pathlib import Path

from gateway.webrtc import browser_peer
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
    args = parser.parse_args()
    if args.stock_timers:
        browser_peer.tune_transport_timers = lambda pc, timers=None: None
    if args.no_red:
        browser_peer.accept_red = lambda transceiver, offer: None
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with FakeRealtimeServer(Behaviour(reply_seconds=args.reply_seconds)) as fake:
        gateway, runner = await start_gateway(gateway_config(upstream_url=fake.url, host=args.host,
                                                             receive_path=args.receive_path))
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
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
