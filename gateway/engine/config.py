"""The local engine's settings: one frozen object from env vars and CLI flags."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .models import LLMS, default_cache_dir


class EngineConfigError(ValueError):
    """A bad setting; the message names its environment variable."""


@dataclass(frozen=True)
class EngineConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    cache_dir: Path = default_cache_dir()
    # Model choices; a path overrides the packaged model (no checksum: the file is the user's).
    llm: str = "qwen2.5-1.5b"
    llm_path: Path | None = None  # a GGUF file (or a directory holding one)
    whisper_path: Path | None = None  # a CTranslate2 Whisper directory (e.g. faster-whisper-small)
    tts: str = "kokoro"  # kokoro (falls back to espeak when its packages are absent) | espeak
    kokoro_path: Path | None = None  # a directory with a Kokoro *.onnx and a voices *.npz
    kokoro_voice: str = "jm_kumo"  # used for OpenAI's voice names ("alloy"…) and unknown ones
    # CPU budget. Each model computes on ``threads`` threads, one model at a time (model_threads.py);
    # ``nice`` lowers the whole engine below the gateway so its 20 ms media pacing always wins a core.
    threads: int = max(1, os.cpu_count() or 1)
    nice: int = 5
    max_reply_tokens: int = 160
    context_tokens: int = 4096
    session_max_s: float = 3600.0  # sessions end like OpenAI's (60 min); 0 = never

    def __post_init__(self) -> None:
        if self.llm not in LLMS:
            raise EngineConfigError(f"ENGINE_LLM must be one of {', '.join(LLMS)}, not {self.llm!r}")
        if self.tts not in ("kokoro", "espeak"):
            raise EngineConfigError(f"ENGINE_TTS must be kokoro or espeak, not {self.tts!r}")
        for name, path in (("ENGINE_LLM_PATH", self.llm_path), ("ENGINE_WHISPER_PATH", self.whisper_path),
                           ("ENGINE_KOKORO_PATH", self.kokoro_path)):
            if path is not None and not path.exists():
                raise EngineConfigError(f"{name}: {path} does not exist")
        if not 0 < self.port < 65536:
            raise EngineConfigError(f"ENGINE_PORT must be 1-65535, not {self.port}")
        if self.threads < 1:
            raise EngineConfigError("ENGINE_THREADS must be >= 1")
        if not 0 <= self.nice <= 19:
            raise EngineConfigError(f"ENGINE_NICE must be 0-19, not {self.nice}")
        if self.max_reply_tokens < 1:
            raise EngineConfigError("ENGINE_MAX_REPLY_TOKENS must be >= 1")
        if self.session_max_s < 0:
            raise EngineConfigError("ENGINE_SESSION_MAX must be >= 0 (0 = never)")


def _path(text: str) -> Path:
    return Path(text).expanduser()


_FLAGS = (
    ("--host", "ENGINE_HOST", "host", str, "listen host"),
    ("--port", "ENGINE_PORT", "port", int, "listen port (ws://HOST:PORT/v1/realtime, GET /healthz)"),
    ("--cache-dir", "ENGINE_CACHE_DIR", "cache_dir", _path,
     "where packaged models are assembled (default ~/.cache/realtime-gateway/models)"),
    ("--llm", "ENGINE_LLM", "llm", str, f"packaged LLM: {', '.join(LLMS)}"),
    ("--llm-path", "ENGINE_LLM_PATH", "llm_path", _path, "your own GGUF chat model (file or directory)"),
    ("--whisper-path", "ENGINE_WHISPER_PATH", "whisper_path", _path,
     "your own CTranslate2 Whisper directory (e.g. faster-whisper-small)"),
    ("--tts", "ENGINE_TTS", "tts", str, "kokoro or espeak"),
    ("--kokoro-path", "ENGINE_KOKORO_PATH", "kokoro_path", _path,
     "your own Kokoro directory: *.onnx + voices *.npz (+ vocab.json/config.json)"),
    ("--kokoro-voice", "ENGINE_KOKORO_VOICE", "kokoro_voice", str,
     "Kokoro voice for OpenAI voice names and unknown ones (default jm_kumo)"),
    ("--threads", "ENGINE_THREADS", "threads", int, "threads per model computation (default: all cores)"),
    ("--nice", "ENGINE_NICE", "nice", int, "CPU niceness of the engine, below the gateway (default 5)"),
    ("--max-reply-tokens", "ENGINE_MAX_REPLY_TOKENS", "max_reply_tokens", int, "longest reply, in LLM tokens"),
    ("--session-max", "ENGINE_SESSION_MAX", "session_max_s", float,
     "seconds before a session ends like OpenAI's 60-minute cap (0 = never)"),
)


def load_engine_config(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> EngineConfig:
    parser = argparse.ArgumentParser(prog="python -m gateway.engine",
                                     description="Offline Realtime-compatible speech-to-speech engine.")
    for flag, env, _, _, help_ in _FLAGS:
        parser.add_argument(flag, dest=env, default=None, help=f"{help_} [env {env}]")
    args = vars(parser.parse_args(argv))
    raw = {k: v for k, v in (os.environ if environ is None else environ).items() if v}
    raw.update({k: v for k, v in args.items() if v is not None})
    values: dict[str, object] = {}
    for _, env, attr, parse, _ in _FLAGS:
        if env in raw:
            try:
                values[attr] = parse(raw[env])
            except ValueError as exc:
                raise EngineConfigError(f"{env} has a bad value {raw[env]!r}: {exc}") from None
    return EngineConfig(**values)  # type: ignore[arg-type]
