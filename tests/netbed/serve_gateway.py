"""Runs inside the bed's server namespace: the gateway plus the fake upstream.

Prints ``{"url": …}`` once serving; on SIGTERM writes the ended calls' summaries and the audio
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

from tests.conftest import gateway_config, start_gateway
from tests.fake_upstream import Behaviour, FakeRealtimeServer


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", required=True)
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--receive-path", default="gateway")
    parser.add_argument("--reply-seconds", type=float, default=1.0)
    args = parser.parse_args()
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
