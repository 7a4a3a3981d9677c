"""Mic audio is written to the upstream at once when nothing waits in front of it (no trip
through the writer task), and the order of audio and events holds when the upstream stops
reading and everything has to queue, then drains."""

from __future__ import annotations

import asyncio
import base64
import json
import struct

from websockets.asyncio.server import ServerConnection, serve

from gateway.core.events import append_message, dumps
from tests.realtime.test_send_queue import link


class RecordingUpstream:
    """A WebSocket server that records what the gateway sends, and can stop reading."""

    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.reading = asyncio.Event()
        self.reading.set()

    async def handle(self, connection: ServerConnection) -> None:
        while True:
            await self.reading.wait()
            try:
                message = await connection.recv()
            except Exception:
                return
            self.messages.append(json.loads(message))

    def numbers(self) -> list[int]:
        """The mic frames' and events' numbers, in the order they arrived."""
        out = []
        for message in self.messages:
            if message["type"] == "input_audio_buffer.append":
                out.append(struct.unpack("<I", base64.b64decode(message["audio"])[:4])[0])
            elif message["type"] == "input_audio_buffer.commit":
                out.append(int(message["event_id"].removeprefix("evt_")))
        return out


def frame(n: int) -> str:
    return append_message(struct.pack("<I", n) + b"\0" * 956)


async def until(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def test_direct_writes_keep_the_order_through_a_stalled_upstream() -> None:
    recording = RecordingUpstream()
    async with serve(recording.handle, "127.0.0.1", 0, compression=None, max_queue=4) as server:
        port = server.sockets[0].getsockname()[1]
        upstream_link = link(upstream_url=f"ws://127.0.0.1:{port}/v1/realtime", upstream_ping_s=30)
        running = asyncio.create_task(upstream_link.run())
        try:
            await until(lambda: any(m["type"] == "session.update" for m in recording.messages))
            sent = 0

            def send_next() -> None:
                nonlocal sent
                if sent % 10 == 9:
                    assert upstream_link.send(dumps({"type": "input_audio_buffer.commit", "event_id": f"evt_{sent}"}))
                else:
                    assert upstream_link.send(frame(sent), audio=True)
                sent += 1

            for _ in range(200):  # a reader that keeps up: everything goes straight out
                send_next()
                await asyncio.sleep(0)
            await until(lambda: len(recording.numbers()) == sent)
            assert upstream_link.sent_direct == 200 and upstream_link.queue.empty()

            recording.reading.clear()  # the upstream stalls: its socket and then ours fill up
            while upstream_link.queue.empty() and sent < 50_000:
                send_next()
                if sent % 50 == 0:
                    await asyncio.sleep(0)  # the transport notices it is backed up
            assert not upstream_link.queue.empty(), "the socket never backed up"
            direct = upstream_link.sent_direct
            for _ in range(100):  # queued behind the backlog now, not written past it
                send_next()
            assert upstream_link.sent_direct == direct and upstream_link.queue.qsize() >= 100

            recording.reading.set()
            during = 0
            while not upstream_link.queue.empty():  # sent while the writer drains: still behind it
                send_next()
                during += 1
                await asyncio.sleep(0.001)
            assert during > 0
            await until(lambda: len(recording.numbers()) == sent, timeout=20)
            assert recording.numbers() == list(range(sent))  # nothing lost, nothing reordered
            assert upstream_link.dropped_audio == 0 and upstream_link.refused_events == 0
            assert (upstream_link.queued_audio, upstream_link.queued_events) == (0, 0)
            for _ in range(10):  # drained: straight out again
                send_next()
            await until(lambda: len(recording.numbers()) == sent)
            assert upstream_link.sent_direct == direct + 10
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)


class SlowUpstream:
    """A socket that always takes a direct write, but whose queued sends wait to be released."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.released = asyncio.Event()

    def send_now(self, message: str) -> bool:
        self.sent.append(message)
        return True

    async def send_text(self, message: str) -> None:
        await self.released.wait()
        self.sent.append(message)


async def test_nothing_is_written_past_messages_still_queued() -> None:
    upstream_link = link()
    for n in range(5):  # queued before the socket was live (a reconnect's backlog)
        upstream_link.send(frame(n), audio=True)
    upstream = SlowUpstream()
    upstream_link._live = upstream  # type: ignore[assignment]  # what _serve does once restored
    writer = asyncio.create_task(upstream_link._write(upstream))  # type: ignore[arg-type]
    try:
        await asyncio.sleep(0.02)  # the writer holds frame 0 in the slow socket; 1-4 wait
        for n in range(5, 8):
            upstream_link.send(frame(n), audio=True)
        assert upstream.sent == [] and upstream_link.sent_direct == 0
        upstream.released.set()
        await until(lambda: upstream_link.queue.empty())
        upstream_link.send(frame(8), audio=True)  # nothing in front of it now
        assert upstream_link.sent_direct == 1
        numbers = [struct.unpack("<I", base64.b64decode(json.loads(m)["audio"])[:4])[0] for m in upstream.sent]
        assert numbers == list(range(9))
    finally:
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
