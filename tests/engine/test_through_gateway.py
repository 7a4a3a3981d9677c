"""A browser stand-in talks to the gateway whose upstream is the real offline engine."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import TypeVar
from urllib.parse import urlsplit

import numpy as np
import pytest

from gateway.media.resample import Upsampler
from tests.conftest import gateway_config, start_gateway
from tests.peers import ClientPeer

from .client import silence
from .test_engine import WEATHER, wav

pytestmark = pytest.mark.engine

Peer = TypeVar("Peer", bound=ClientPeer)


@contextlib.asynccontextmanager
async def peer_through_gateway(engine_url: str, peer_class: type[Peer]) -> AsyncIterator[Peer]:
    """A gateway whose upstream is the engine at ``engine_url``, and a browser stand-in of
    ``peer_class`` connected to it, its session created; both closed on the way out."""
    gateway, runner = await start_gateway(gateway_config(upstream="local", engine_port=urlsplit(engine_url).port,
                                                         openai_api_key=None))
    try:
        peer = peer_class(gateway.url)
        try:
            await peer.connect()
            await peer.channel_open()
            await peer.wait_for("session.created", timeout=20)
            yield peer
        finally:
            await peer.close()
    finally:
        await runner.cleanup()


async def test_spoken_turn_through_the_gateway(engine_url: str) -> None:
    async with peer_through_gateway(engine_url, ClientPeer) as peer:
        end_of_speech = peer.mic.say(Upsampler().process(np.concatenate((silence(0.3), wav("pt_br_capital_brasil")))))
        user = await peer.wait_for("conversation.item.input_audio_transcription.completed", timeout=30)
        assert "capital" in user["transcript"].lower()
        started = await peer.wait_for("output_audio_buffer.started", timeout=60)
        await peer.wait_for("output_audio_buffer.stopped", timeout=60)
        transcript = await peer.wait_for("response.output_audio_transcript.done")
        assert transcript["response_id"] == started["response_id"] and transcript["transcript"].strip()
        reply = peer.heard_between(end_of_speech)
        assert np.sqrt(np.mean(reply.astype(float) ** 2)) > 300


class TimedPeer(ClientPeer):
    """Also notes when each data-channel event arrived."""

    def __init__(self, base_url: str) -> None:
        super().__init__(base_url)
        self.arrivals: list[float] = []

    def _on_message(self, message: str) -> None:
        self.arrivals.append(time.monotonic())
        super()._on_message(message)


async def test_barge_in_silences_a_flowing_reply_at_once(engine_url: str) -> None:
    """The engine sends a reply's audio ahead of playout now; talking over it still cuts it at
    once (the gateway flushes what was queued; at the gateway the cut takes one 20 ms frame)."""
    async with peer_through_gateway(engine_url, TimedPeer) as peer:
        peer.mic.say(Upsampler().process(np.concatenate((silence(0.3), wav("pt_br_historia")))))
        await peer.wait_for("output_audio_buffer.started", timeout=90)
        mark = len(peer.events)
        await asyncio.sleep(0.6)  # the reply is playing
        peer.mic.say(Upsampler().process(wav("pt_br_capital_brasil")))
        started = await peer.wait_for("input_audio_buffer.speech_started", after=mark, timeout=20)
        heard_at = peer.arrivals[peer.events.index(started)]
        assert np.abs(peer.heard_between(heard_at - 0.5, heard_at)).max() > 1000  # it was speaking up to then
        await asyncio.sleep(1.2)
        # Frames the gateway sent before its flush still arrive (loopback, the client's receive
        # queue; bursty on a busy machine): some tens of ms. After that, silence — although the
        # engine had queued seconds of the reply ahead of playout.
        loud = [when - heard_at for when, frame in peer.heard
                if heard_at <= when <= heard_at + 1.0 and np.abs(frame).max() >= 300]
        assert len(loud) <= 8 and max(loud, default=0.0) < 0.15, loud
        after = peer.heard_between(heard_at + 0.15, heard_at + 1.0)
        assert len(after) > 48000 * 0.7 and np.abs(after).max() < 300
        cleared = [e for e in peer.events[mark:] if e["type"] in ("output_audio_buffer.cleared",
                                                                  "output_audio_buffer.stopped")]
        assert cleared


async def test_a_tool_call_end_to_end_through_the_gateway(engine_url: str) -> None:
    """A browser's data channel, the gateway, the real model: the session's tool is called with
    the city the user asked about, the browser answers it, and the spoken reply uses the result."""
    async with peer_through_gateway(engine_url, ClientPeer) as peer:
        mark = len(peer.events)
        peer.send({"type": "session.update", "session": {"type": "realtime", "tools": [WEATHER], "tool_choice": "auto"}})
        await peer.wait_for("session.updated", after=mark)
        peer.send({"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "Como está o tempo agora em Recife?"}]}})
        peer.send({"type": "response.create"})
        arguments = await peer.wait_for("response.function_call_arguments.done", after=mark, timeout=240)
        done = await peer.wait_for("response.done", after=mark, timeout=90)
        (call,) = [item for item in done["response"]["output"] if item["type"] == "function_call"]
        assert (call["name"], call["call_id"]) == ("get_weather", arguments["call_id"])
        assert "recife" in json.loads(arguments["arguments"])["city"].lower()
        mark = len(peer.events)
        peer.send({"type": "conversation.item.create", "item": {
            "type": "function_call_output", "call_id": call["call_id"],
            "output": json.dumps({"temperatura_celsius": 31, "ceu": "ensolarado"})}})
        asked = time.monotonic()
        peer.send({"type": "response.create"})
        await peer.wait_for("output_audio_buffer.started", after=mark, timeout=90)
        done = await peer.wait_for("response.done", after=mark, timeout=90)
        (message,) = [item for item in done["response"]["output"] if item["type"] == "message"]
        transcript = message["content"][0]["transcript"].lower()
        assert "31" in transcript or "trinta e um" in transcript, transcript
        await peer.wait_for("output_audio_buffer.stopped", after=mark, timeout=60)
        heard = peer.heard_between(asked)
        assert np.sqrt(np.mean(heard.astype(float) ** 2)) > 300  # the answer was spoken to the browser
        assert not peer.of_type("error"), peer.of_type("error")
