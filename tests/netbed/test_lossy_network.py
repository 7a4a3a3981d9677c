"""A call across a real lossy, jittery link (network namespaces): the upstream still hears it all."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.engine.models import WHISPER_BASE, default_cache_dir, materialize
from gateway.engine.stt import Transcriber
from tests.audio_tools import DATA, read_wav
from tests.netbed.bed import NetBed, require
from tests.netbed.scenario import run_call

pytestmark = pytest.mark.netns


def test_ten_percent_loss_with_jitter_loses_no_speech(tmp_path: Path) -> None:
    require()
    with NetBed(seed=11) as bed:
        bed.set_delay(50, jitter_ms=20)
        bed.set_loss(10)
        summary, audio, _ = run_call(bed, tmp_path, [DATA / "pt_br_dom_casmurro.wav"])
    frames = summary["mic_frames"]
    sent = frames.pop("sent_by_peer")
    delivered = sum(frames.values())
    assert delivered >= 0.995 * sent  # a continuous 20 ms cadence reached the upstream
    # Lost speech was rebuilt from FEC: ~12 of the 2.4 s of speech's 120 packets are lost at 10 %,
    # and 107 of its 120 packets carry LBRR, so ~10 frames come back from it (8 in one run). Losses
    # in the silence around the speech are concealed: silent packets carry no LBRR (libopus's FEC
    # decode of such a packet is its concealment, so they are counted as concealed).
    assert frames.get("fec", 0) >= 4, frames
    assert summary["jitter_buffer_ms"]["p50"] <= 40
    pcm, _ = read_wav(audio)
    transcript = Transcriber(materialize(WHISPER_BASE, default_cache_dir()), 1).transcribe(pcm, "pt").lower()
    assert "escreveu" in transcript and "livro" in transcript, transcript
