"""One typed, frozen configuration object, built once from environment and CLI.

Every setting has an environment variable (the seed's names where it had one) and a CLI flag;
the flag wins. Nothing below this module reads the environment: the object is passed down.
Bad values fail at start with a :class:`ConfigError` that names the setting.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
import re
import socket
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
    # The key the gateway presents to the local engine (Authorization: Bearer). Unset: the gateway
    # generates one each time it starts the engine and hands it over in the environment only.
    engine_api_key: str | None = field(default=None, repr=False)

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
    # Which socket peers are proxies whose X-Forwarded-For / Forwarded (and -Host) name the client.
    trusted_proxies: tuple[str, ...] = ()
    max_calls_per_client: int = 10  # concurrent calls of one client identity (0 = no limit)
    max_call_duration_s: float = 3600.0  # a call is ended (telling the client) after this; 0 = never
    metrics_token: str | None = field(default=None, repr=False)  # Bearer for /metrics; unset = loopback only
    # "single": a client secret creates one call; "until_expiry": calls until it expires (OpenAI's way).
    client_secret_reuse: str = "single"
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
    # Model audio allowed to wait for playback (upstreams send faster than real time); beyond
    # it deltas are dropped. 120 s at 48 kHz is 11.5 MB per call at most.
    playout_max_queued_s: float = 120.0
    # Events (not mic audio) allowed to wait for a stalled or reconnecting upstream socket;
    # beyond either bound an event is refused with an error to the client.
    upstream_max_queued_events: int = 256
    upstream_max_queued_bytes: int = 4 * 1024 * 1024
    # Who turns the mic's RTP into audio: the gateway's own path (FEC, concealment, no added
    # delay) or aiortc's (fixed 80 ms buffer, no FEC) for comparison.
    receive_path: str = "gateway"
    # Who moves a call's RTP once DTLS is up: native (C: libsrtp2, batched receive, one pacing
    # timer for all calls; see media/native/) or python (aiortc's per-packet path). auto: native
    # when the extension is built (scripts/setup_native.sh), else python with a warning. The
    # default stays python until native passes the whole suite (20 concurrent calls in one
    # process still lose a reply: see the native-media notes).
    media_path: str = "python"
    # What a browser's mic may cost upstream (the own receive path; see media/audio_receiver.py):
    # audio ahead of the wall clock, concealment after the mic's packets stop, new SSRCs followed.
    mic_burst_ms: int = 200
    mic_silence_stop_s: float = 2.0
    mic_max_ssrc_changes: int = 4
    # RED (RFC 2198) with browsers that offer it, both ways (see webrtc/red_audio.py).
    red: bool = True
    # Generic NACK (RFC 4585) for mic packets the sender offered to retransmit: asked for once,
    # and a gap whose packet was asked for waited for up to this long (see media/nack.py).
    mic_nack: bool = True
    mic_nack_max_wait_ms: int = 80
    # Set-up retransmission timers for lossy links (webrtc/transport_timers.py); off: aiortc's own.
    fast_setup_timers: bool = True
    dtls_resend_initial_ms: int = 250
    dtls_resend_max_ms: int = 1200
    dtls_resends: int = 8
    sctp_rto_initial_ms: int = 250
    sctp_rto_min_ms: int = 250
    sctp_backoff_max_ms: int = 1000
    ice_rto_ms: int = 150

    log_level: str = "INFO"
    event_loop: str = "uvloop"  # uvloop (libuv) or asyncio's own; uvloop measured cheaper per call
    # One process per core (aiortc is single-threaded); the parent sets the two below for each.
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    worker_index: int | None = None
    # A worker that dies is replaced after WORKER_RESTART_BACKOFF (doubling while it keeps dying);
    # more than WORKER_MAX_RESTARTS deaths within WORKER_RESTART_WINDOW stop the gateway (0 = the
    # first death does). The supervisor tells each replacement how many came before it.
    worker_max_restarts: int = 5
    worker_restart_window_s: float = 60.0
    worker_restart_backoff_s: float = 1.0
    worker_restarts: int = 0
    # Workers' private sockets and shared admission store: a fresh 0700 directory inside this one
    # (checked: ours, not group/world-writable); None = inside the system's temporary directory.
    runtime_dir: Path | None = None

    # Many instances behind one front (nginx, a Kubernetes Service): see gateway/server/cluster.py.
    instance_id: str = field(default_factory=lambda: sanitise_instance_id(socket.gethostname()))
    gateway_secret: str | None = field(default=None, repr=False)  # signs client secrets; same on every instance
    redis_url: str | None = field(default=None, repr=False)  # shared limits and single use across instances
    instances: tuple[str, ...] = ()  # name=http://address:port of the others, for forwarding
    advertise_url: str | None = None  # how the other instances reach this one (registered in Redis)

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
        _check(self.engine_api_key is None or len(self.engine_api_key) >= 16, "ENGINE_API_KEY",
               "must be at least 16 characters long")
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
        _check(0 <= self.worker_max_restarts <= 1000, "WORKER_MAX_RESTARTS",
               f"must be 0-1000 (0 = a dying worker stops the gateway), not {self.worker_max_restarts}")
        _check(1 <= self.worker_restart_window_s <= 86400, "WORKER_RESTART_WINDOW", "must be 1-86400 s")
        _check(0 <= self.worker_restart_backoff_s <= 60, "WORKER_RESTART_BACKOFF", "must be 0-60 s")
        _check(self.worker_restarts >= 0, "WORKER_RESTARTS", "must be >= 0")
        _check(self.media_path in ("auto", "native", "python"), "MEDIA_PATH",
               f"must be auto, native or python, not {self.media_path!r}")
        if self.media_path == "native":
            from .media.native import available as native_unavailable
            problem = native_unavailable()
            _check(problem is None, "MEDIA_PATH", f"is native, but {problem}")
        _check(self.event_loop in ("uvloop", "asyncio"), "EVENT_LOOP", f"must be uvloop or asyncio, not {self.event_loop!r}")
        _check(self.rate_limit_per_minute > 0, "RATE_LIMIT", "must be > 0")
        for cidr in self.trusted_proxies:
            _check(_is_network(cidr), "TRUSTED_PROXIES", f"entries must be IP networks (CIDR), not {cidr!r}")
        _check(self.max_calls_per_client >= 0, "MAX_CALLS_PER_CLIENT", "must be >= 0 (0 = no limit)")
        _check(self.max_call_duration_s == 0 or self.max_call_duration_s >= 1, "MAX_CALL_DURATION",
               "must be 0 (no limit) or at least 1 s")
        _check(self.metrics_token is None or len(self.metrics_token) >= 16, "METRICS_TOKEN",
               "must be at least 16 characters long")
        _check(self.client_secret_reuse in ("single", "until_expiry"), "CLIENT_SECRET_REUSE",
               f"must be single or until_expiry, not {self.client_secret_reuse!r}")
        _check(self.drain_timeout_s >= 0, "SHUTDOWN_DRAIN_TIMEOUT", "must be >= 0")
        _check(_INSTANCE_ID.fullmatch(self.instance_id) is not None, "INSTANCE_ID",
               f"must be 1-40 of a-z, 0-9 and '-', not w<digits>, not {self.instance_id!r}")
        _check(self.gateway_secret is None or len(self.gateway_secret) >= 32, "GATEWAY_SECRET",
               "must be at least 32 characters long")
        _check(self.redis_url is None or urlsplit(self.redis_url).scheme in ("redis", "rediss", "unix"),
               "REDIS_URL", "must be a redis://, rediss:// or unix:// URL")
        for entry in self.instances:
            name, _, url = entry.partition("=")
            _check(_INSTANCE_ID.fullmatch(name) is not None and urlsplit(url).scheme in ("http", "https"),
                   "INSTANCES", f"entries must be name=http://host:port, not {entry!r}")
        _check(self.advertise_url is None or urlsplit(self.advertise_url).scheme in ("http", "https"),
               "ADVERTISE_URL", "must be an http:// or https:// URL")
        _check(all(len(key) >= 16 for key in self.api_keys), "GATEWAY_API_KEYS",
               "entries must be at least 16 characters long")
        _check(self.receive_path in ("gateway", "aiortc"), "RECEIVE_PATH",
               f"must be gateway or aiortc, not {self.receive_path!r}")
        _check(self.max_body_bytes >= 4096, "MAX_BODY_BYTES", "must be >= 4096")
        _check(40 <= self.mic_burst_ms <= 2000, "MIC_BURST_MS", f"must be 40-2000, not {self.mic_burst_ms}")
        _check(0.5 <= self.mic_silence_stop_s <= 60, "MIC_SILENCE_STOP",
               f"must be 0.5-60 s, not {self.mic_silence_stop_s}")
        _check(0 <= self.mic_max_ssrc_changes <= 100, "MIC_MAX_SSRC_CHANGES",
               f"must be 0-100, not {self.mic_max_ssrc_changes}")
        _check(0 <= self.mic_nack_max_wait_ms <= 500, "MIC_NACK_MAX_WAIT_MS",
               f"must be 0-500, not {self.mic_nack_max_wait_ms}")
        for name, value, low, high in (("DTLS_RESEND_INITIAL_MS", self.dtls_resend_initial_ms, 50, 1000),
                                       ("DTLS_RESEND_MAX_MS", self.dtls_resend_max_ms, 50, 10000),
                                       ("DTLS_RESENDS", self.dtls_resends, 0, 30),
                                       ("SCTP_RTO_INITIAL_MS", self.sctp_rto_initial_ms, 50, 3000),
                                       ("SCTP_RTO_MIN_MS", self.sctp_rto_min_ms, 50, 1000),
                                       ("SCTP_BACKOFF_MAX_MS", self.sctp_backoff_max_ms, 100, 60000),
                                       ("ICE_RTO_MS", self.ice_rto_ms, 50, 500)):
            _check(low <= value <= high, name, f"must be {low}-{high}, not {value}")
        _check(self.dtls_resend_max_ms >= self.dtls_resend_initial_ms, "DTLS_RESEND_MAX_MS",
               "must be >= DTLS_RESEND_INITIAL_MS")
        _check(self.sctp_rto_min_ms <= self.sctp_rto_initial_ms <= self.sctp_backoff_max_ms, "SCTP_RTO_INITIAL_MS",
               "must be between SCTP_RTO_MIN_MS and SCTP_BACKOFF_MAX_MS")
        _check(1 <= self.playout_max_queued_s <= 3600, "PLAYOUT_MAX_QUEUED", "must be 1-3600 s")
        _check(self.upstream_max_queued_events >= 16, "UPSTREAM_MAX_QUEUED_EVENTS", "must be >= 16")
        _check(self.upstream_max_queued_bytes >= 128 * 1024, "UPSTREAM_MAX_QUEUED_BYTES",
               "must be >= 131072 (two of the largest data-channel events)")
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
    def resolved_media_path(self) -> str:
        """auto means native when the extension is built here, else python."""
        if self.media_path == "auto":
            from .media.native import available as native_unavailable
            return "native" if native_unavailable() is None else "python"
        return self.media_path

    @property
    def resolved_upstream(self) -> str:
        """auto means OpenAI when a key is set, else the offline local engine."""
        if self.upstream == "auto":
            return "openai" if self.openai_api_key else "local"
        return self.upstream

    @property
    def upstream_api_key(self) -> str | None:
        """The key the upstream WebSocket is opened with: the local engine's, or OpenAI's."""
        return self.engine_api_key if self.resolved_upstream == "local" else self.openai_api_key

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


_INSTANCE_ID = re.compile(r"(?!w\d+$)[a-z0-9][a-z0-9-]{0,39}")


def sanitise_instance_id(name: str) -> str:
    """A host or pod name as an id part: lower case, [a-z0-9-] only, at most 40 characters."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:40].strip("-") or "gateway"
    return f"h{cleaned}"[:40] if _INSTANCE_ID.fullmatch(cleaned) is None else cleaned


def _check(ok: bool, setting: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{setting} {message}")


def _is_network(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


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
    _Setting("--engine-api-key", "ENGINE_API_KEY", "engine_api_key", str,
             "key for a local engine started by hand (prefer the env var; unset: generated per start)"),
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
    _Setting("--trusted-proxies", "TRUSTED_PROXIES", "trusted_proxies", _csv,
             "comma list of proxy networks (CIDR) whose X-Forwarded-For/Forwarded name the client"),
    _Setting("--max-calls-per-client", "MAX_CALLS_PER_CLIENT", "max_calls_per_client", int,
             "concurrent calls of one client IP before answering 429 (0 = no limit)"),
    _Setting("--max-call-duration", "MAX_CALL_DURATION", "max_call_duration_s", float,
             "seconds after which a call is ended, telling the client (0 = no limit)"),
    _Setting("--metrics-token", "METRICS_TOKEN", "metrics_token", str,
             "Bearer token required for /metrics (unset: /metrics answers loopback clients only)"),
    _Setting("--client-secret-reuse", "CLIENT_SECRET_REUSE", "client_secret_reuse", str,
             "single (a client secret creates one call) or until_expiry (OpenAI's behaviour)"),
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
    _Setting("--playout-max-queued", "PLAYOUT_MAX_QUEUED", "playout_max_queued_s", float,
             "seconds of model audio that may wait for playback; later audio of a longer backlog is dropped"),
    _Setting("--upstream-max-queued-events", "UPSTREAM_MAX_QUEUED_EVENTS", "upstream_max_queued_events", int,
             "client events that may wait for a stalled upstream before more are refused with an error"),
    _Setting("--upstream-max-queued-bytes", "UPSTREAM_MAX_QUEUED_BYTES", "upstream_max_queued_bytes", int,
             "bytes of client events that may wait for a stalled upstream"),
    _Setting("--receive-path", "RECEIVE_PATH", "receive_path", str,
             "gateway (own jitter buffer, Opus FEC/concealment) or aiortc"),
    _Setting("--media-path", "MEDIA_PATH", "media_path", str,
             "python (default: aiortc's), native (C RTP/SRTP pump) or auto (native if built, else python)"),
    _Setting("--mic-burst-ms", "MIC_BURST_MS", "mic_burst_ms", int,
             "mic audio (ms) the upstream may receive ahead of the wall clock; beyond it frames are dropped"),
    _Setting("--mic-silence-stop", "MIC_SILENCE_STOP", "mic_silence_stop_s", float,
             "seconds without mic packets after which no more concealment is sent upstream"),
    _Setting("--mic-max-ssrc-changes", "MIC_MAX_SSRC_CHANGES", "mic_max_ssrc_changes", int,
             "new mic SSRCs a browser connection may switch to; later ones are ignored"),
    _Setting("--red", "RED", "red", _bool,
             "RED audio redundancy (RFC 2198) both ways with browsers that offer it (false: plain Opus)"),
    _Setting("--mic-nack", "MIC_NACK", "mic_nack", _bool,
             "ask senders that offer NACK for audio to resend lost mic packets (RFC 4585)"),
    _Setting("--mic-nack-max-wait-ms", "MIC_NACK_MAX_WAIT_MS", "mic_nack_max_wait_ms", int,
             "longest wait (ms) for a resent mic packet before concealing it (0: ask, never wait)"),
    _Setting("--fast-setup-timers", "FAST_SETUP_TIMERS", "fast_setup_timers", _bool,
             "DTLS/SCTP/ICE retransmission timers for lossy links (false: aiortc's own, 1 s/3 s/0.5 s)"),
    _Setting("--dtls-resend-initial-ms", "DTLS_RESEND_INITIAL_MS", "dtls_resend_initial_ms", int,
             "ms before our DTLS handshake flight is sent again (doubling)"),
    _Setting("--dtls-resend-max-ms", "DTLS_RESEND_MAX_MS", "dtls_resend_max_ms", int,
             "longest ms between DTLS flight resends"),
    _Setting("--dtls-resends", "DTLS_RESENDS", "dtls_resends", int, "resends of one DTLS flight, at most"),
    _Setting("--sctp-rto-initial-ms", "SCTP_RTO_INITIAL_MS", "sctp_rto_initial_ms", int,
             "SCTP retransmission timeout (ms) before the first RTT sample (aiortc: 3000)"),
    _Setting("--sctp-rto-min-ms", "SCTP_RTO_MIN_MS", "sctp_rto_min_ms", int,
             "smallest SCTP retransmission timeout (ms) (aiortc: 1000)"),
    _Setting("--sctp-backoff-max-ms", "SCTP_BACKOFF_MAX_MS", "sctp_backoff_max_ms", int,
             "longest SCTP retransmission timeout (ms) while backing off before the first RTT sample"),
    _Setting("--ice-rto-ms", "ICE_RTO_MS", "ice_rto_ms", int,
             "ms before an ICE connectivity check is retransmitted (doubling; aioice: 500)"),
    _Setting("--event-loop", "EVENT_LOOP", "event_loop", str, "uvloop (default) or asyncio"),
    _Setting("--workers", "WORKERS", "workers", int, "gateway processes (default: one per CPU core)"),
    _Setting("--worker-index", "WORKER_INDEX", "worker_index", int, "internal: this process's worker number"),
    _Setting("--worker-max-restarts", "WORKER_MAX_RESTARTS", "worker_max_restarts", int,
             "worker deaths within WORKER_RESTART_WINDOW that are replaced; one more stops the gateway (0 = none)"),
    _Setting("--worker-restart-window", "WORKER_RESTART_WINDOW", "worker_restart_window_s", float,
             "seconds over which worker deaths are counted towards WORKER_MAX_RESTARTS"),
    _Setting("--worker-restart-backoff", "WORKER_RESTART_BACKOFF", "worker_restart_backoff_s", float,
             "seconds before a dead worker is replaced (doubled while it keeps dying, at most 30 s)"),
    _Setting("--worker-restarts", "WORKER_RESTARTS", "worker_restarts", int,
             "internal: how many times the supervisor has replaced this worker"),
    _Setting("--runtime-dir", "RUNTIME_DIR", "runtime_dir", _path,
             "directory (ours, not group/world-writable) for the workers' private sockets (default: system temp)"),
    _Setting("--instance-id", "INSTANCE_ID", "instance_id", str,
             "this instance's name in every id, for the front to route by (default: host name)"),
    _Setting("--gateway-secret", "GATEWAY_SECRET", "gateway_secret", str,
             "signs client secrets so any instance accepts them (the same on every instance)"),
    _Setting("--redis-url", "REDIS_URL", "redis_url", str,
             "redis:// for limits and single-use secrets across instances (unset: each instance alone)"),
    _Setting("--instances", "INSTANCES", "instances", _csv,
             "name=http://address:port of the other instances, for forwarding (or from Redis)"),
    _Setting("--advertise-url", "ADVERTISE_URL", "advertise_url", str,
             "this instance's http://address:port for the others (registered in Redis)"),
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
