"""Settings of the model's side: which Realtime API, how its socket is kept, the local engine.

Used by ``gateway/realtime/`` (the upstream WebSocket) and ``gateway/server/engine_process.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .config_parse import Setting, check, check_choice, check_range, check_secret

OPENAI_REALTIME_URL = "wss://api.openai.com/v1/realtime"


@dataclass(frozen=True)
class UpstreamSettings:
    # Upstream Realtime API.
    openai_api_key: str | None = field(default=None, repr=False)
    upstream: str = "auto"  # auto | openai | local | url
    upstream_url: str = OPENAI_REALTIME_URL
    upstream_auth_header: str = "Authorization"  # "api-key" for Azure-style endpoints
    upstream_connect_timeout_s: float = 10.0
    upstream_reconnect_timeout_s: float = 30.0  # a dropped session is retried this long
    upstream_ping_s: float = 5.0  # WebSocket ping interval and timeout: a hung upstream shows in 2×
    upstream_session_max_s: float = 3300.0  # move to a new session after this (OpenAI caps at 60 min); 0 = never
    # Events (not mic audio) allowed to wait for a stalled or reconnecting upstream socket;
    # beyond either bound an event is refused with an error to the client.
    upstream_max_queued_events: int = 256
    upstream_max_queued_bytes: int = 4 * 1024 * 1024

    # Local engine (used when upstream resolves to "local").
    engine_host: str = "127.0.0.1"
    engine_port: int = 8765
    engine_start_timeout_s: float = 900.0
    # The key the gateway presents to the local engine (Authorization: Bearer). Unset: the gateway
    # generates one each time it starts the engine and hands it over in the environment only.
    engine_api_key: str | None = field(default=None, repr=False)

    def _check_upstream(self) -> None:
        check_choice("UPSTREAM", self.upstream, ("auto", "openai", "local", "url"))
        check(urlsplit(self.upstream_url).scheme in ("ws", "wss"), "UPSTREAM_URL",
              f"must be a ws:// or wss:// URL, not {self.upstream_url!r}")
        check(self.resolved_upstream != "openai" or bool(self.openai_api_key), "OPENAI_API_KEY",
              "is required when UPSTREAM=openai")
        check_range("ENGINE_PORT", self.engine_port, 1, 65535)
        check_secret("ENGINE_API_KEY", self.engine_api_key, 16)
        check(self.upstream_max_queued_events >= 16, "UPSTREAM_MAX_QUEUED_EVENTS", "must be >= 16")
        check(self.upstream_max_queued_bytes >= 128 * 1024, "UPSTREAM_MAX_QUEUED_BYTES",
              "must be >= 131072 (two of the largest data-channel events)")
        check(self.upstream_connect_timeout_s > 0, "UPSTREAM_CONNECT_TIMEOUT", "must be > 0")
        check(self.upstream_reconnect_timeout_s >= 0, "UPSTREAM_RECONNECT_TIMEOUT", "must be >= 0")
        check(self.upstream_ping_s > 0, "UPSTREAM_PING", "must be > 0")
        check(self.upstream_session_max_s == 0 or self.upstream_session_max_s >= 5, "UPSTREAM_SESSION_MAX",
              "must be 0 (never roll over) or at least 5 s")

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


UPSTREAM_SETTINGS: tuple[Setting, ...] = (
    Setting("--openai-api-key", "OPENAI_API_KEY", "openai_api_key", str, "OpenAI API key (server side only)"),
    Setting("--upstream", "UPSTREAM", "upstream", str, "auto (OpenAI if a key is set, else local), openai, local or url"),
    Setting("--upstream-url", "UPSTREAM_URL", "upstream_url", str, "Realtime WebSocket URL (ws:// or wss://)"),
    Setting("--upstream-auth-header", "UPSTREAM_AUTH_HEADER", "upstream_auth_header", str,
            "header carrying the key: Authorization (Bearer) or e.g. api-key (Azure)"),
    Setting("--upstream-connect-timeout", "UPSTREAM_CONNECT_TIMEOUT", "upstream_connect_timeout_s", float,
            "seconds to open the upstream WebSocket"),
    Setting("--upstream-reconnect-timeout", "UPSTREAM_RECONNECT_TIMEOUT", "upstream_reconnect_timeout_s", float,
            "seconds to keep retrying a dropped upstream session before ending the call"),
    Setting("--upstream-ping", "UPSTREAM_PING", "upstream_ping_s", float,
            "WebSocket ping interval and timeout (s) towards the upstream"),
    Setting("--upstream-session-max", "UPSTREAM_SESSION_MAX", "upstream_session_max_s", float,
            "seconds after which the call moves to a new upstream session at a quiet moment (0 = never)"),
    Setting("--upstream-max-queued-events", "UPSTREAM_MAX_QUEUED_EVENTS", "upstream_max_queued_events", int,
            "client events that may wait for a stalled upstream before more are refused with an error"),
    Setting("--upstream-max-queued-bytes", "UPSTREAM_MAX_QUEUED_BYTES", "upstream_max_queued_bytes", int,
            "bytes of client events that may wait for a stalled upstream"),
    Setting("--engine-host", "ENGINE_HOST", "engine_host", str, "local engine listen host"),
    Setting("--engine-port", "ENGINE_PORT", "engine_port", int, "local engine listen port"),
    Setting("--engine-api-key", "ENGINE_API_KEY", "engine_api_key", str,
            "key for a local engine started by hand (prefer the env var; unset: generated per start)"),
    Setting("--engine-start-timeout", "ENGINE_START_TIMEOUT", "engine_start_timeout_s", float,
            "seconds to wait for the local engine to load its models"),
)

