"""Settings of the HTTP interface and its clients: listening, TLS, origins, keys, client secrets.

Used by ``gateway/server/`` (signaling, origin, client identity, metrics endpoint) and
``core/tokens.py`` (client secret lifetimes).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from .config_parse import Setting, check, check_choice, check_range, check_secret, parse_csv, parse_path


@dataclass(frozen=True)
class HttpSettings:
    # HTTP / signaling.
    host: str = "0.0.0.0"
    port: int = 5000
    tls_cert: Path | None = None
    tls_key: Path | None = None
    allowed_origins: tuple[str, ...] = ()
    web_root: Path | None = Path(__file__).resolve().parent.parent / "web"
    max_body_bytes: int = 64 * 1024

    # Tokens and clients.
    # Minting policy: with keys, only holders (an embedder's backend) may mint client secrets;
    # without, anyone on an allowed origin may (rate-limited): fine for local use.
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    rate_limit_per_minute: int = 30  # per client IP, for minting and for call creation each
    # Which socket peers are proxies whose X-Forwarded-For / Forwarded (and -Host) name the client.
    trusted_proxies: tuple[str, ...] = ()
    max_calls_per_client: int = 10  # concurrent calls of one client identity (0 = no limit)
    metrics_token: str | None = field(default=None, repr=False)  # Bearer for /metrics; unset = loopback only
    # "single": a client secret creates one call; "until_expiry": calls until it expires (OpenAI's way).
    client_secret_reuse: str = "single"
    token_ttl_s: int = 600
    token_max_ttl_s: int = 7200

    def _check_http(self) -> None:
        check_range("PORT", self.port, 1, 65535)
        check((self.tls_cert is None) == (self.tls_key is None), "TLS_CERT/TLS_KEY", "must be given together")
        for name, path in (("TLS_CERT", self.tls_cert), ("TLS_KEY", self.tls_key)):
            check(path is None or path.is_file(), name, f"file not found: {path}")
        for origin in self.allowed_origins:
            check(origin == "*" or urlsplit(origin).scheme in ("http", "https"), "ALLOWED_ORIGINS",
                  f"entries must be '*' or http(s)://host[:port], not {origin!r}")
        check(self.max_body_bytes >= 4096, "MAX_BODY_BYTES", "must be >= 4096")
        check(all(len(key) >= 16 for key in self.api_keys), "GATEWAY_API_KEYS",
              "entries must be at least 16 characters long")
        check(self.rate_limit_per_minute > 0, "RATE_LIMIT", "must be > 0")
        for cidr in self.trusted_proxies:
            check(_is_network(cidr), "TRUSTED_PROXIES", f"entries must be IP networks (CIDR), not {cidr!r}")
        check(self.max_calls_per_client >= 0, "MAX_CALLS_PER_CLIENT", "must be >= 0 (0 = no limit)")
        check_secret("METRICS_TOKEN", self.metrics_token, 16)
        check_choice("CLIENT_SECRET_REUSE", self.client_secret_reuse, ("single", "until_expiry"))
        check(10 <= self.token_ttl_s <= self.token_max_ttl_s, "TOKEN_TTL",
              f"must be between 10 and TOKEN_MAX_TTL ({self.token_max_ttl_s}), not {self.token_ttl_s}")


def _is_network(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


HTTP_SETTINGS: tuple[Setting, ...] = (
    Setting("--host", "HOST", "host", str, "HTTP listen host"),
    Setting("--port", "PORT", "port", int, "HTTP listen port"),
    Setting("--tls-cert", "TLS_CERT", "tls_cert", parse_path, "TLS certificate (PEM) for https"),
    Setting("--tls-key", "TLS_KEY", "tls_key", parse_path, "TLS private key (PEM)"),
    Setting("--allowed-origins", "ALLOWED_ORIGINS", "allowed_origins", parse_csv,
            "comma list of origins allowed to call the API cross-origin ('*' for any)"),
    Setting("--web-root", "WEB_ROOT", "web_root", parse_path, "directory served at / (empty to disable)"),
    Setting("--max-body-bytes", "MAX_BODY_BYTES", "max_body_bytes", int, "largest accepted request body"),
    Setting("--api-keys", "GATEWAY_API_KEYS", "api_keys", parse_csv,
            "comma list of keys required to mint client secrets (unset: open, rate-limited)"),
    Setting("--rate-limit", "RATE_LIMIT", "rate_limit_per_minute", int,
            "requests per minute per client IP, for minting and for call creation"),
    Setting("--trusted-proxies", "TRUSTED_PROXIES", "trusted_proxies", parse_csv,
            "comma list of proxy networks (CIDR) whose X-Forwarded-For/Forwarded name the client"),
    Setting("--max-calls-per-client", "MAX_CALLS_PER_CLIENT", "max_calls_per_client", int,
            "concurrent calls of one client IP before answering 429 (0 = no limit)"),
    Setting("--metrics-token", "METRICS_TOKEN", "metrics_token", str,
            "Bearer token required for /metrics (unset: /metrics answers loopback clients only)"),
    Setting("--client-secret-reuse", "CLIENT_SECRET_REUSE", "client_secret_reuse", str,
            "single (a client secret creates one call) or until_expiry (OpenAI's behaviour)"),
    Setting("--token-ttl", "TOKEN_TTL", "token_ttl_s", int, "default client secret lifetime (s)"),
    Setting("--token-max-ttl", "TOKEN_MAX_TTL", "token_max_ttl_s", int, "longest client secret lifetime (s)"),
)
