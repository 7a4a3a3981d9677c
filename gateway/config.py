"""One typed, frozen configuration object, built once from environment and CLI.

Every setting has an environment variable (the seed's names where it had one) and a CLI flag;
the flag wins. Nothing below this module reads the environment: the object is passed down.
Bad values fail at start with a :class:`ConfigError` that names the setting.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .webrtc.turn_credentials import ice_url_problem

OPENAI_REALTIME_URL = "wss://api.openai.com/v1/realtime"

# Seed phase 1.2: a pt-BR assistant asked for short, direct answers.
DEFAULT_INSTRUCTIONS = (
    "Você é um assistente de voz em português do Brasil. IMPORTANTE: dê respostas curtas e "
    "diretas, com no máximo duas ou três frases, sem listas nem formatação. Fale de forma "
    "natural e amigável e vá direto ao ponto."
)


class ConfigError(ValueError):
    """A setting has a bad value; the message names the setting."""


@dataclass(frozen=True)
class TurnDetection:
    """Server VAD settings sent upstream (seed §3.1 by default, §1.1 as the "fast" preset)."""

    threshold: float = 0.3
    silence_duration_ms: int = 600
    prefix_padding_ms: int = 100
    create_response: bool = True
    interrupt_response: bool = True

    def to_session(self) -> dict[str, Any]:
        return {"type": "server_vad", **dataclasses.asdict(self)}


VAD_PRESETS: Mapping[str, TurnDetection] = {
    "default": TurnDetection(),
    "fast": TurnDetection(threshold=0.25, silence_duration_ms=200, prefix_padding_ms=50),
}


@dataclass(frozen=True)
class IceServer:
    """One entry of RTCConfiguration.iceServers (credentials are minted per token for TURN)."""

    urls: str

    @property
    def is_turn(self) -> bool:
        return self.urls.startswith(("turn:", "turns:"))


@dataclass(frozen=True)
class Config:
    # Upstream Realtime API.
    openai_api_key: str | None = field(default=None, repr=False)
    upstream: str = "auto"  # auto | openai | local | url
    upstream_url: str = OPENAI_REALTIME_URL
    upstream_auth_header: str = "Authorization"  # "api-key" for Azure-style endpoints
    upstream_connect_timeout_s: float = 10.0
    upstream_reconnect_timeout_s: float = 30.0  # a dropped session is retried this long
    upstream_ping_s: float = 5.0  # WebSocket ping interval and timeout: a hung upstream shows in 2×
    upstream_session_max_s: float = 3300.0  # move to a new session after this (OpenAI caps at 60 min); 0 = never
    model: str = "gpt-realtime"
    voice: str = "alloy"
    instructions: str = DEFAULT_INSTRUCTIONS
    transcription_model: str = "whisper-1"
    transcription_language: str = "pt"
    turn_detection: TurnDetection = TurnDetection()
    # Which session fields a client may not change (dotted paths, prefix match).
    locked_session_fields: tuple[str, ...] = ("model",)

    # Local engine (used when upstream resolves to "local").
    engine_host: str = "127.0.0.1"
    engine_port: int = 8765
    engine_start_timeout_s: float = 900.0

    # HTTP / signaling.
    host: str = "0.0.0.0"
    port: int = 5000
    tls_cert: Path | None = None
    tls_key: Path | None = None
    allowed_origins: tuple[str, ...] = ()
    web_root: Path | None = Path(__file__).resolve().parent.parent / "web"
    max_body_bytes: int = 64 * 1024

    # Tokens and calls.
    # Minting policy: with keys, only holders (an embedder's backend) may mint client secrets;
    # without, anyone on an allowed origin may (rate-limited): fine for local use.
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    rate_limit_per_minute: int = 30  # per client IP, for minting and for call creation each
    drain_timeout_s: float = 30.0  # on SIGTERM, calls may finish for this long
    token_ttl_s: int = 600
    token_max_ttl_s: int = 7200
    max_calls: int = 100
    ice_servers: tuple[IceServer, ...] = ()  # stun:, turn:, turns: URLs, in order of preference
    turn_secret: str | None = field(default=None, repr=False)  # coturn's static-auth-secret
    turn_credential_ttl_s: int = 3600  # must cover a whole call: allocations refresh with it
    ice_transport_policy: str = "all"  # "relay": the gateway's own peer uses TURN only
    ice_connect_timeout_s: float = 10.0
    peer_timeout_s: float = 2.5  # no mic RTP for this long after connecting = the browser is gone
    resume_grace_s: float = 30.0  # a vanished browser may come back (new network) within this
    # Browser playout delay assumed when computing how much of a reply was heard.
    playout_delay_ms: int = 60
    # Who turns the mic's RTP into audio: the gateway's own path (FEC, concealment, no added
    # delay) or aiortc's (fixed 80 ms buffer, no FEC) for comparison.
    receive_path: str = "gateway"

    log_level: str = "INFO"
    event_loop: str = "uvloop"  # uvloop (libuv) or asyncio's own; uvloop measured cheaper per call
    # One process per core (aiortc is single-threaded); the parent sets the two below for each.
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    worker_index: int | None = None
    runtime_dir: Path = Path("/tmp/realtime-gateway")

    def __post_init__(self) -> None:
        _check(self.upstream in ("auto", "openai", "local", "url"), "UPSTREAM",
               f"must be auto, openai, local or url, not {self.upstream!r}")
        scheme = urlsplit(self.upstream_url).scheme
        _check(scheme in ("ws", "wss"), "UPSTREAM_URL",
               f"must be a ws:// or wss:// URL, not {self.upstream_url!r}")
        _check(self.resolved_upstream != "openai" or bool(self.openai_api_key), "OPENAI_API_KEY",
               "is required when UPSTREAM=openai")
        _check(0 < self.port < 65536, "PORT", f"must be 1-65535, not {self.port}")
        _check(0 < self.engine_port < 65536, "ENGINE_PORT", f"must be 1-65535, not {self.engine_port}")
        _check((self.tls_cert is None) == (self.tls_key is None), "TLS_CERT/TLS_KEY",
               "must be given together")
        for name, path in (("TLS_CERT", self.tls_cert), ("TLS_KEY", self.tls_key)):
            _check(path is None or path.is_file(), name, f"file not found: {path}")
        td = self.turn_detection
        _check(0.0 <= td.threshold <= 1.0, "VAD_THRESHOLD", f"must be 0.0-1.0, not {td.threshold}")
        _check(td.silence_duration_ms > 0, "VAD_SILENCE_DURATION_MS", "must be > 0")
        _check(td.prefix_padding_ms >= 0, "VAD_PREFIX_PADDING_MS", "must be >= 0")
        _check(10 <= self.token_ttl_s <= self.token_max_ttl_s, "TOKEN_TTL",
               f"must be between 10 and TOKEN_MAX_TTL ({self.token_max_ttl_s}), not {self.token_ttl_s}")
        _check(self.max_calls > 0, "MAX_CALLS", "must be > 0")
        _check(1 <= self.workers <= 64, "WORKERS", f"must be 1-64, not {self.workers}")
        _check(self.event_loop in ("uvloop", "asyncio"), "EVENT_LOOP", f"must be uvloop or asyncio, not {self.event_loop!r}")
        _check(self.rate_limit_per_minute > 0, "RATE_LIMIT", "must be > 0")
        _check(self.drain_timeout_s >= 0, "SHUTDOWN_DRAIN_TIMEOUT", "must be >= 0")
        _check(all(len(key) >= 16 for key in self.api_keys), "GATEWAY_API_KEYS",
               "entries must be at least 16 characters long")
        _check(self.receive_path in ("gateway", "aiortc"), "RECEIVE_PATH",
               f"must be gateway or aiortc, not {self.receive_path!r}")
        _check(self.max_body_bytes >= 4096, "MAX_BODY_BYTES", "must be >= 4096")
        _check(self.ice_connect_timeout_s > 0, "ICE_CONNECT_TIMEOUT", "must be > 0")
        _check(self.peer_timeout_s >= 1, "PEER_TIMEOUT", "must be >= 1 s")
        _check(self.resume_grace_s >= 0, "RESUME_GRACE", "must be >= 0 (0 disables resuming)")
        _check(self.upstream_connect_timeout_s > 0, "UPSTREAM_CONNECT_TIMEOUT", "must be > 0")
        _check(self.upstream_reconnect_timeout_s >= 0, "UPSTREAM_RECONNECT_TIMEOUT", "must be >= 0")
        _check(self.upstream_ping_s > 0, "UPSTREAM_PING", "must be > 0")
        _check(self.upstream_session_max_s == 0 or self.upstream_session_max_s >= 5, "UPSTREAM_SESSION_MAX",
               "must be 0 (never roll over) or at least 5 s")
        for origin in self.allowed_origins:
            _check(origin == "*" or urlsplit(origin).scheme in ("http", "https"), "ALLOWED_ORIGINS",
                   f"entries must be '*' or http(s)://host[:port], not {origin!r}")
        for server in self.ice_servers:
            problem = ice_url_problem(server.urls)
            _check(problem is None, "ICE_SERVERS", f"entry {problem}")
        _check(bool(self.turn_secret) or not any(s.is_turn for s in self.ice_servers), "TURN_SECRET",
               "is required when ICE_SERVERS has turn: or turns: URLs (coturn's static-auth-secret)")
        _check(self.ice_transport_policy in ("all", "relay"), "ICE_TRANSPORT_POLICY",
               f"must be all or relay, not {self.ice_transport_policy!r}")
        _check(self.ice_transport_policy == "all" or any(s.is_turn for s in self.ice_servers),
               "ICE_TRANSPORT_POLICY", "relay needs a turn: URL in ICE_SERVERS")
        _check(60 <= self.turn_credential_ttl_s <= 7 * 86400, "TURN_CREDENTIAL_TTL",
               f"must be between 60 s and a week, not {self.turn_credential_ttl_s}")

    @property
    def resolved_upstream(self) -> str:
        """auto means OpenAI when a key is set, else the offline local engine."""
        if self.upstream == "auto":
            return "openai" if self.openai_api_key else "local"
        return self.upstream

    @property
    def realtime_url(self) -> str:
        """The WebSocket URL the gateway dials for each call."""
        if self.resolved_upstream == "local":
            return f"ws://{self.engine_host}:{self.engine_port}/v1/realtime"
        return self.upstream_url

    def default_session(self) -> dict[str, Any]:
        """The GA ``session`` object every call starts from."""
        return {
            "type": "realtime",
            "model": self.model,
            "instructions": self.instructions,
            "output_modalities": ["audio"],
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": 24000},
                    "transcription": {
                        "model": self.transcription_model,
                        "language": self.transcription_language,
                    },
                    "turn_detection": self.turn_detection.to_session(),
                },
                "output": {
                    "format": {"type": "audio/pcm", "rate": 24000},
                    "voice": self.voice,
                },
            },
        }


def _check(ok: bool, setting: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{setting} {message}")


# --- building from env + CLI ----------------------------------------------------------------


@dataclass(frozen=True)
class _Setting:
    flag: str
    env: str
    attr: str
    parse: Callable[[str], Any]
    help: str


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true/false, not {text!r}")


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _ice_servers(text: str) -> tuple[IceServer, ...]:
    return tuple(IceServer(urls=url) for url in _csv(text))


def _path(text: str) -> Path | None:
    return Path(text).expanduser() if text else None


_SETTINGS: tuple[_Setting, ...] = (
    _Setting("--openai-api-key", "OPENAI_API_KEY", "openai_api_key", str, "OpenAI API key (server side only)"),
    _Setting("--upstream", "UPSTREAM", "upstream", str, "auto (OpenAI if a key is set, else local), openai, local or url"),
    _Setting("--upstream-url", "UPSTREAM_URL", "upstream_url", str, "Realtime WebSocket URL (ws:// or wss://)"),
    _Setting("--upstream-auth-header", "UPSTREAM_AUTH_HEADER", "upstream_auth_header", str,
             "header carrying the key: Authorization (Bearer) or e.g. api-key (Azure)"),
    _Setting("--upstream-connect-timeout", "UPSTREAM_CONNECT_TIMEOUT", "upstream_connect_timeout_s", float,
             "seconds to open the upstream WebSocket"),
    _Setting("--upstream-reconnect-timeout", "UPSTREAM_RECONNECT_TIMEOUT", "upstream_reconnect_timeout_s", float,
             "seconds to keep retrying a dropped upstream session before ending the call"),
    _Setting("--upstream-ping", "UPSTREAM_PING", "upstream_ping_s", float,
             "WebSocket ping interval and timeout (s) towards the upstream"),
    _Setting("--upstream-session-max", "UPSTREAM_SESSION_MAX", "upstream_session_max_s", float,
             "seconds after which the call moves to a new upstream session at a quiet moment (0 = never)"),
    _Setting("--model", "OPENAI_MODEL", "model", str, "Realtime model"),
    _Setting("--voice", "VOICE", "voice", str, "assistant voice"),
    _Setting("--instructions", "INSTRUCTIONS", "instructions", str, "system instructions"),
    _Setting("--transcription-model", "TRANSCRIPTION_MODEL", "transcription_model", str, "input transcription model"),
    _Setting("--transcription-language", "TRANSCRIPTION_LANGUAGE", "transcription_language", str,
             "input transcription language"),
    _Setting("--locked-session-fields", "LOCKED_SESSION_FIELDS", "locked_session_fields", _csv,
             "comma list of session fields clients may not change (e.g. model,instructions)"),
    _Setting("--engine-host", "ENGINE_HOST", "engine_host", str, "local engine listen host"),
    _Setting("--engine-port", "ENGINE_PORT", "engine_port", int, "local engine listen port"),
    _Setting("--engine-start-timeout", "ENGINE_START_TIMEOUT", "engine_start_timeout_s", float,
             "seconds to wait for the local engine to load its models"),
    _Setting("--host", "HOST", "host", str, "HTTP listen host"),
    _Setting("--port", "PORT", "port", int, "HTTP listen port"),
    _Setting("--tls-cert", "TLS_CERT", "tls_cert", _path, "TLS certificate (PEM) for https"),
    _Setting("--tls-key", "TLS_KEY", "tls_key", _path, "TLS private key (PEM)"),
    _Setting("--allowed-origins", "ALLOWED_ORIGINS", "allowed_origins", _csv,
             "comma list of origins allowed to call the API cross-origin ('*' for any)"),
    _Setting("--web-root", "WEB_ROOT", "web_root", _path, "directory served at / (empty to disable)"),
    _Setting("--max-body-bytes", "MAX_BODY_BYTES", "max_body_bytes", int, "largest accepted request body"),
    _Setting("--api-keys", "GATEWAY_API_KEYS", "api_keys", _csv,
             "comma list of keys required to mint client secrets (unset: open, rate-limited)"),
    _Setting("--rate-limit", "RATE_LIMIT", "rate_limit_per_minute", int,
             "requests per minute per client IP, for minting and for call creation"),
    _Setting("--shutdown-drain-timeout", "SHUTDOWN_DRAIN_TIMEOUT", "drain_timeout_s", float,
             "seconds calls may continue after SIGTERM"),
    _Setting("--token-ttl", "TOKEN_TTL", "token_ttl_s", int, "default client secret lifetime (s)"),
    _Setting("--token-max-ttl", "TOKEN_MAX_TTL", "token_max_ttl_s", int, "longest client secret lifetime (s)"),
    _Setting("--max-calls", "MAX_CALLS", "max_calls", int, "concurrent calls before answering 503"),
    _Setting("--ice-servers", "ICE_SERVERS", "ice_servers", _ice_servers, "comma list of stun:/turn: URLs"),
    _Setting("--turn-secret", "TURN_SECRET", "turn_secret", str,
             "shared secret with the TURN server (coturn static-auth-secret)"),
    _Setting("--turn-credential-ttl", "TURN_CREDENTIAL_TTL", "turn_credential_ttl_s", int,
             "lifetime (s) of minted TURN credentials; must cover a call"),
    _Setting("--ice-transport-policy", "ICE_TRANSPORT_POLICY", "ice_transport_policy", str,
             "all, or relay to make the gateway's own peer use TURN only"),
    _Setting("--ice-connect-timeout", "ICE_CONNECT_TIMEOUT", "ice_connect_timeout_s", float,
             "seconds for ICE to connect before the call is ended"),
    _Setting("--peer-timeout", "PEER_TIMEOUT", "peer_timeout_s", float,
             "seconds without mic media before a connected browser is considered gone"),
    _Setting("--resume-grace", "RESUME_GRACE", "resume_grace_s", float,
             "seconds a call whose browser vanished waits to be resumed (0 = end at once)"),
    _Setting("--playout-delay-ms", "PLAYOUT_DELAY_MS", "playout_delay_ms", int,
             "assumed browser playout delay when truncating an interrupted reply"),
    _Setting("--receive-path", "RECEIVE_PATH", "receive_path", str,
             "gateway (own jitter buffer, Opus FEC/concealment) or aiortc"),
    _Setting("--event-loop", "EVENT_LOOP", "event_loop", str, "uvloop (default) or asyncio"),
    _Setting("--workers", "WORKERS", "workers", int, "gateway processes (default: one per CPU core)"),
    _Setting("--worker-index", "WORKER_INDEX", "worker_index", int, "internal: this process's worker number"),
    _Setting("--runtime-dir", "RUNTIME_DIR", "runtime_dir", Path, "where workers keep their private sockets"),
    _Setting("--log-level", "LOG_LEVEL", "log_level", str, "DEBUG, INFO, WARNING or ERROR"),
)

_VAD_SETTINGS: tuple[_Setting, ...] = (
    _Setting("--vad-threshold", "VAD_THRESHOLD", "threshold", float, "speech probability threshold 0-1"),
    _Setting("--vad-silence-duration-ms", "VAD_SILENCE_DURATION_MS", "silence_duration_ms", int,
             "silence that ends a turn"),
    _Setting("--vad-prefix-padding-ms", "VAD_PREFIX_PADDING_MS", "prefix_padding_ms", int,
             "audio kept before detected speech"),
    _Setting("--vad-create-response", "VAD_CREATE_RESPONSE", "create_response", _bool,
             "answer automatically at end of turn"),
    _Setting("--vad-interrupt-response", "VAD_INTERRUPT_RESPONSE", "interrupt_response", _bool,
             "user speech interrupts the reply"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="realtime-gateway",
        description="WebRTC media gateway for speech-to-speech Realtime APIs.",
    )
    for setting in _SETTINGS + _VAD_SETTINGS:
        parser.add_argument(setting.flag, dest=setting.env, default=None,
                            help=f"{setting.help} [env {setting.env}]")
    parser.add_argument("--vad-preset", dest="VAD_PRESET", default=None, choices=sorted(VAD_PRESETS),
                        help="named VAD values to start from [env VAD_PRESET]")
    return parser


def load_config(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Build the Config from ``environ`` (default: os.environ) overridden by ``argv`` flags."""
    env = dict(os.environ if environ is None else environ)
    args = vars(build_parser().parse_args(argv))
    raw = {name: value for name, value in env.items() if value != ""}
    raw.update({name: value for name, value in args.items() if value is not None})

    def parse(setting: _Setting) -> Any:
        try:
            return setting.parse(raw[setting.env])
        except ValueError as exc:
            raise ConfigError(f"{setting.env} has a bad value {raw[setting.env]!r}: {exc}") from None

    values: dict[str, Any] = {s.attr: parse(s) for s in _SETTINGS if s.env in raw}

    preset_name = raw.get("VAD_PRESET", "default")
    if preset_name not in VAD_PRESETS:
        raise ConfigError(f"VAD_PRESET must be one of {', '.join(sorted(VAD_PRESETS))}, not {preset_name!r}")
    vad_values = {s.attr: parse(s) for s in _VAD_SETTINGS if s.env in raw}
    values["turn_detection"] = dataclasses.replace(VAD_PRESETS[preset_name], **vad_values)
    return Config(**values)
