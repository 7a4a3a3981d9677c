"""The local engine's settings: one frozen object from env vars and CLI flags."""

from __future__ import annotations

import argparse
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .models import LLMS, default_cache_dir
from .stt import DEFAULT_CONTEXT as DEFAULT_STT_CONTEXT


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
    # The packaged graph's decoder skips most of the leading pad (kokoro_graph.py): ~0.1 s less
    # synthesis per piece, but replies sounded less Portuguese to Whisper's language check: off.
    kokoro_crop_pad: bool = False
    # CPU budget. Each model computes on ``threads`` threads, one model at a time (model_threads.py);
    # ``nice`` lowers the whole engine below the gateway so its 20 ms media pacing always wins a core.
    threads: int = max(1, os.cpu_count() or 1)
    nice: int = 5
    max_reply_tokens: int = 120  # ~25 s of speech: a voice answer is two or three sentences
    context_tokens: int = 4096
    session_max_s: float = 3600.0  # sessions end like OpenAI's (60 min); 0 = never
    # Hardening. The key comes from the environment only (never argv, which `ps` shows); the
    # gateway generates one per start. ``api_key_generated``: nobody gave one, so it is logged once.
    api_key: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    api_key_generated: bool = False
    max_sessions: int = 8  # concurrent Realtime sessions; more get HTTP 503
    max_input_s: float = 30.0  # input audio kept uncommitted (Whisper hears 30 s at most)
    warm_up: bool = True  # run every model once before /healthz says ready
    speculate: bool = True  # start the reply on the early transcript of a paused turn
    # Whisper's previous-text context for Portuguese turns (stt.py); "none": no context.
    stt_context: str = DEFAULT_STT_CONTEXT

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
        if len(self.api_key) < 16:
            raise EngineConfigError("ENGINE_API_KEY must be at least 16 characters long")
        if self.max_sessions < 1:
            raise EngineConfigError("ENGINE_MAX_SESSIONS must be >= 1")
        if not 1.0 <= self.max_input_s <= 600.0:
            raise EngineConfigError(f"ENGINE_MAX_INPUT_AUDIO must be 1-600 s, not {self.max_input_s}")


def _path(text: str) -> Path:
    return Path(text).expanduser()


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        raise ValueError("expected true or false")
    return lowered in ("1", "true", "yes", "on")


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
    ("--kokoro-crop-pad", "ENGINE_KOKORO_CROP_PAD", "kokoro_crop_pad", _bool,
     "synthesize only the end of Kokoro's leading pad (a graph rewrite built once; needs onnx; default off)"),
    ("--threads", "ENGINE_THREADS", "threads", int, "threads per model computation (default: all cores)"),
    ("--nice", "ENGINE_NICE", "nice", int, "CPU niceness of the engine, below the gateway (default 5)"),
    ("--max-reply-tokens", "ENGINE_MAX_REPLY_TOKENS", "max_reply_tokens", int, "longest reply, in LLM tokens"),
    ("--session-max", "ENGINE_SESSION_MAX", "session_max_s", float,
     "seconds before a session ends like OpenAI's 60-minute cap (0 = never)"),
    ("--max-sessions", "ENGINE_MAX_SESSIONS", "max_sessions", int, "concurrent sessions before HTTP 503 (default 8)"),
    ("--max-input-audio", "ENGINE_MAX_INPUT_AUDIO", "max_input_s", float,
     "seconds of uncommitted input audio kept; older audio is dropped with an error (default 30)"),
    ("--warm-up", "ENGINE_WARM_UP", "warm_up", _bool, "run every model once before reporting ready (default on)"),
    ("--speculate", "ENGINE_SPECULATE", "speculate", _bool,
     "start writing and speaking the reply on the early transcript of a paused turn (default on)"),
    ("--stt-context", "ENGINE_STT_CONTEXT", "stt_context", str,
     "generic text Whisper takes as what came before a Portuguese turn ('none': no context)"),
)
# Environment only: a secret on the command line is visible to every user of the machine.
API_KEY_ENV = "ENGINE_API_KEY"


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
    if API_KEY_ENV in raw:
        values["api_key"] = raw[API_KEY_ENV]
    else:
        values["api_key_generated"] = True
    return EngineConfig(**values)  # type: ignore[arg-type]
