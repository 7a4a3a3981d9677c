"""The local engine's settings: one frozen object from env vars and CLI flags."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .models import LLMS, default_cache_dir


class EngineConfigError(ValueError):
    pass


@dataclass(frozen=True)
class EngineConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    cache_dir: Path = default_cache_dir()
    # Model choices; a path overrides the packaged model (no checksum: the file is the user's).
    llm: str = "qwen2.5-1.5b"
    llm_path: Path | None = None  # a GGUF file
    whisper_path: Path | None = None  # a CTranslate2 Whisper directory (e.g. faster-whisper-small)
    tts: str = "kokoro"  # kokoro | espeak
    kokoro_voice: str = "jm_kumo"
    # CPU budget: this machine class has 2 cores shared with the gateway's media pacing.
    threads: int = 2
    max_reply_tokens: int = 160
    context_tokens: int = 4096
    session_max_s: float = 3600.0  # sessions end like OpenAI's (60 min); 0 = never

    def __post_init__(self) -> None:
        if self.llm not in LLMS:
            raise EngineConfigError(f"ENGINE_LLM must be one of {', '.join(LLMS)}, not {self.llm!r}")
        if self.tts not in ("kokoro", "espeak"):
            raise EngineConfigError(f"ENGINE_TTS must be kokoro or espeak, not {self.tts!r}")
        for name, path in (("ENGINE_LLM_PATH", self.llm_path), ("ENGINE_WHISPER_PATH", self.whisper_path)):
            if path is not None and not path.exists():
                raise EngineConfigError(f"{name}: {path} does not exist")
        if not 0 < self.port < 65536:
            raise EngineConfigError(f"ENGINE_PORT must be 1-65535, not {self.port}")
        if self.threads < 1:
            raise EngineConfigError("ENGINE_THREADS must be >= 1")


_FLAGS = (
    ("--host", "ENGINE_HOST", "host", str),
    ("--port", "ENGINE_PORT", "port", int),
    ("--cache-dir", "ENGINE_CACHE_DIR", "cache_dir", Path),
    ("--llm", "ENGINE_LLM", "llm", str),
    ("--llm-path", "ENGINE_LLM_PATH", "llm_path", Path),
    ("--whisper-path", "ENGINE_WHISPER_PATH", "whisper_path", Path),
    ("--tts", "ENGINE_TTS", "tts", str),
    ("--kokoro-voice", "ENGINE_KOKORO_VOICE", "kokoro_voice", str),
    ("--threads", "ENGINE_THREADS", "threads", int),
    ("--max-reply-tokens", "ENGINE_MAX_REPLY_TOKENS", "max_reply_tokens", int),
    ("--session-max", "ENGINE_SESSION_MAX", "session_max_s", float),
)


def load_engine_config(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> EngineConfig:
    parser = argparse.ArgumentParser(prog="python -m gateway.engine",
                                     description="Offline Realtime-compatible speech-to-speech engine.")
    for flag, env, _, _ in _FLAGS:
        parser.add_argument(flag, dest=env, default=None, help=f"[env {env}]")
    args = vars(parser.parse_args(argv))
    raw = {k: v for k, v in (os.environ if environ is None else environ).items() if v}
    raw.update({k: v for k, v in args.items() if v is not None})
    values = {}
    for _, env, attr, parse in _FLAGS:
        if env in raw:
            try:
                values[attr] = parse(raw[env])
            except ValueError as exc:
                raise EngineConfigError(f"{env} has a bad value {raw[env]!r}: {exc}") from None
    return EngineConfig(**values)
