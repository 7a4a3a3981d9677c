"""A client that does what the web module does when its network drops: it notices the silence,
then brings the call back on a new connection with its resume token. Runs inside a netbed host.

Prints one JSON line per milestone: {"event": "answered" | "outage" | "resumed" | "answered_again",
"at": time.monotonic()}, so the test can time them against its own outage (same clock).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from gateway.media.outbound_codec import OpusPacketizer
from tests.audio_tools import voiced
from tests.peers import ClientPeer

SILENCE_BEFORE_RESUME_S = 1.0  # no inbound audio for this long: the path is gone


def say(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, "at": time.monotonic(), **fields}), flush=True)


def last_heard(peer: ClientPeer) -> float:
    return peer.heard[-1][0] if peer.heard else 0.0


async def one_turn(peer: ClientPeer) -> None:
    mark = len(peer.events)
    peer.mic.say(voiced(1.2, 180.0, 48000))
    await peer.wait_for("output_audio_buffer.stopped", after=mark, timeout=30)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--give-up", type=float, default=40.0)
    args = parser.parse_args()
    peer = ClientPeer(args.url, packetize=OpusPacketizer())
    await peer.connect()
    await peer.channel_open(timeout=20)
    await peer.wait_for("session.created", timeout=20)
    await one_turn(peer)
    say("answered")
    while time.monotonic() - last_heard(peer) < SILENCE_BEFORE_RESUME_S:
        await asyncio.sleep(0.05)
    say("outage")
    token, deadline = peer.resume_token, time.monotonic() + args.give_up
    await peer.pc.close()  # the old connection is dead: no hang-up, just a new one
    while True:
        fresh = ClientPeer(args.url, packetize=OpusPacketizer())
        try:
            status = await asyncio.wait_for(fresh.resume(token), 3.0)
        except (TimeoutError, OSError, Exception):  # no route yet: the network is still down
            status = 0
        if status == 201:
            break
        await fresh.pc.close()
        assert time.monotonic() < deadline, f"could not resume (last status {status})"
        await asyncio.sleep(0.25)
    peer = fresh
    await peer.channel_open(timeout=10)
    while not peer.heard:  # the gateway's voice is flowing again
        await asyncio.sleep(0.01)
    say("resumed")
    await one_turn(peer)
    say("answered_again", events=len(peer.events))
    await peer.close()


if __name__ == "__main__":
    asyncio.run(main())
