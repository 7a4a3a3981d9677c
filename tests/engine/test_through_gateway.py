"""A browser stand-in talks to the gateway whose upstream is the real offline engine."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.media.resample import Upsampler
from tests.conftest import gateway_config, start_gateway
from tests.peers import ClientPeer

from .client import silence
from .test_engine import wav

pytestmark = pytest.mark.engine


async def test_spoken_turn_through_the_gateway(engine_url: str) -> None:
    gateway, runner = await start_gateway(gateway_config(upstream_url=engine_url, openai_api_key=None))
    peer = ClientPeer(gateway.url)
    try:
        await peer.connect()
        await peer.channel_open()
        await peer.wait_for("session.created", timeout=20)
        end_of_speech = peer.mic.say(Upsampler().process(np.concatenate((silence(0.3), wav("pt_br_capital_brasil")))))
        user = await peer.wait_for("conversation.item.input_audio_transcription.completed", timeout=30)
        assert "capital" in user["transcript"].lower()
        started = await peer.wait_for("output_audio_buffer.started", timeout=60)
        await peer.wait_for("output_audio_buffer.stopped", timeout=60)
        transcript = await peer.wait_for("response.output_audio_transcript.done")
        assert transcript["response_id"] == started["response_id"] and transcript["transcript"].strip()
        reply = peer.heard_between(end_of_speech)
        assert np.sqrt(np.mean(reply.astype(float) ** 2)) > 300
    finally:
        await peer.close()
        await runner.cleanup()
