"""Kokoro's pad-cropped graph (kokoro_graph.py) with the real packaged model and Whisper."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.engine.config import load_engine_config
from gateway.engine.kokoro_graph import LEAD_FRAMES, GraphError, crop_leading_pad, cropped_graph
from gateway.engine.models import WHISPER_BASE, choose_models, default_cache_dir, materialize, packaged_kokoro
from gateway.engine.stt import Transcriber
from gateway.engine.tts import KokoroVoice
from tests.audio_tools import rms

onnx = pytest.importorskip("onnx")
pytestmark = pytest.mark.engine
SENTENCES = ("Sim, claro.", "A capital do Brasil é Brasília.")
FRAME = 600  # samples per Kokoro frame at 24 kHz


def _words(text: str) -> list[str]:
    return "".join(c for c in text.lower() if c.isalnum() or c.isspace()).split()


def test_the_cropped_graph_says_the_same_words_with_less_to_synthesize(tmp_path: Path) -> None:
    shipped = packaged_kokoro(default_cache_dir())
    cropped = cropped_graph(shipped.model, tmp_path)
    assert cropped != shipped.model
    whisper = Transcriber(materialize(WHISPER_BASE, default_cache_dir()), 2)
    before = KokoroVoice(shipped, "jm_kumo", 2)
    after = KokoroVoice(type(shipped)(cropped, shipped.voices, shipped.vocab), "jm_kumo", 2)
    for text in SENTENCES:
        raw_before, raw_after = before.synthesize_raw(text), after.synthesize_raw(text)
        spoken_before, spoken_after = before.synthesize(text), after.synthesize(text)
        # The decoder made fewer frames: the leading pad (~15 frames) cut to LEAD_FRAMES.
        assert len(raw_before) - len(raw_after) >= 4 * FRAME, text
        # …and none of the speech: what is left after trimming is as long, as loud, and heard as the text.
        assert abs(len(spoken_after) - len(spoken_before)) <= 3 * FRAME, text
        assert 0.7 <= rms(spoken_after) / rms(spoken_before) <= 1.3, text
        assert _words(whisper.transcribe(spoken_after, "pt", "")) == _words(text)


def test_a_graph_it_does_not_know_is_used_as_it_is(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "other",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph)
    with pytest.raises(GraphError):
        crop_leading_pad(model, LEAD_FRAMES)
    source = tmp_path / "other.onnx"
    onnx.save(model, str(source))
    assert cropped_graph(source, tmp_path) == source


def test_the_rewrite_is_built_once_and_again_when_its_source_changes(tmp_path: Path) -> None:
    source = packaged_kokoro(default_cache_dir()).model
    built = cropped_graph(source, tmp_path)
    first = built.stat().st_mtime_ns
    assert cropped_graph(source, tmp_path) == built and built.stat().st_mtime_ns == first
    stamp = built.with_name(built.name + ".built")
    stamp.write_text(stamp.read_text().replace('"version": ', '"version": -'))
    assert cropped_graph(source, tmp_path) == built and built.stat().st_mtime_ns != first


def test_the_engine_speaks_with_the_shipped_graph_unless_the_crop_is_turned_on() -> None:
    default = choose_models(load_engine_config([], {})).kokoro
    on = choose_models(load_engine_config([], {"ENGINE_KOKORO_CROP_PAD": "on"})).kokoro
    assert default is not None and default.model == packaged_kokoro(default_cache_dir()).model
    assert on is not None and on.model.name == f"kokoro-v1.0.int8.lead{LEAD_FRAMES}.onnx"
