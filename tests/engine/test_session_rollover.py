"""A session cap on the real engine: the gateway moves to a new engine session at a quiet moment,
unnoticed, and the assistant still remembers what was said before."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from gateway.media.resample import Upsampler
from tests.conftest import ENGINE_TEST_KEY, free_port, gateway_config, start_gateway
from tests.peers import ClientPeer

from .client import silence
from .test_engine import wav

pytestmark = pytest.mark.engine
ROOT = Path(__file__).resolve().parents[2]


async def test_the_conversation_survives_the_engines_session_cap() -> None:
    port = free_port()
    engine = subprocess.Popen([sys.executable, "-m", "gateway.engine", "--port", str(port), "--session-max", "20"],
                              cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1", "ENGINE_API_KEY": ENGINE_TEST_KEY})
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).status == 200:
                    break
            except OSError:
                assert engine.poll() is None and time.monotonic() < deadline
                time.sleep(0.3)
        gateway, runner = await start_gateway(gateway_config(
            upstream="local", engine_port=port, openai_api_key=None, upstream_session_max_s=8))
        peer = ClientPeer(gateway.url)
        try:
            await peer.connect()
            await peer.channel_open()
            await peer.wait_for("session.created", timeout=20)
            peer.mic.say(Upsampler().process(np.concatenate((silence(0.3), wav("pt_br_meu_nome_carlos")))))
            await peer.wait_for("output_audio_buffer.stopped", timeout=60)
            (call,) = gateway.state.calls
            deadline = time.monotonic() + 30
            while call._link.connects < 2:  # past 8 s, at the first quiet moment
                assert time.monotonic() < deadline, "no roll-over"
                await __import__("asyncio").sleep(0.2)
            mark = len(peer.events)
            peer.mic.say(Upsampler().process(np.concatenate((silence(0.5), wav("pt_br_qual_meu_nome")))))
            answer = await peer.wait_for("response.output_audio_transcript.done", after=mark, timeout=60)
            assert "carlos" in answer["transcript"].lower(), answer["transcript"]
            assert not peer.of_type("error"), peer.of_type("error")
        finally:
            await peer.close()
            await runner.cleanup()
    finally:
        engine.terminate()
        engine.wait(10)
