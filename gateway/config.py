"""One typed, frozen configuration object, built once from environment and CLI.

Every setting has an environment variable (the seed's names where it had one) and a CLI flag;
the flag wins. Nothing below this module reads the environment: the object is passed down.
Bad values fail at start with a :class:`ConfigError` that names the setting.

:class:`Config` is one flat object (``config.port``, ``config.ice_servers``…) made of one part
per area; each area's module holds its fields with their defaults, its rows of env var + flag,
and its checks, so a setting is read, added or changed in one file:

=============================  ================================================================
``config_upstream.py``         the model's side: OpenAI / a URL / the local engine, the upstream
                               socket's timeouts, ping, session roll-over, queued events; the
                               local engine's host, port, key
``config_session.py``          the session every call starts with: model, voice, instructions,
                               transcription, turn detection (VAD presets and ``VAD_*``), the
                               fields clients may not change
``config_http.py``             the HTTP interface and its clients: listen, TLS, origins, body
                               size, API keys, client secrets (lifetime, reuse), trusted proxies,
                               per-client rate and call limits, ``/metrics`` token
``config_network.py``          the browser's network path: STUN/TURN servers and credentials,
                               ICE policy and timeouts, liveness, resume, DTLS/SCTP/ICE set-up
                               timers for lossy links
``config_media.py``            the audio: receive and media paths, what the mic may cost, RED,
                               NACK, playout delay and backlog
``config_deployment.py``       how it runs: capacity (calls, duration, drain), event loop, log
                               level, worker processes and their restarts, runtime dir, many
                               instances (instance id, secret, Redis, peers)
``config_parse.py``            what the areas are written with: ``Setting``, the value parsers,
                               ``check`` / ``check_range`` / ``check_choice`` / ``check_secret``
=============================  ================================================================

To add a setting: in its area's module, add the field (with a sane default and a comment saying
why), a ``Setting`` row in that module's table, and a check in its ``_check_<area>`` method.
Everything that was ever importable from here (``Config``, ``ConfigError``, ``load_config``,
``IceServer``, ``TurnDetection``, ``VAD_PRESETS``…) still is.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .config_deployment import DEPLOYMENT_SETTINGS, DeploymentSettings, sanitise_instance_id
from .config_http import HTTP_SETTINGS, HttpSettings
from .config_media import MEDIA_SETTINGS, MediaSettings
from .config_network import NETWORK_SETTINGS, IceServer, NetworkSettings
from .config_parse import ConfigError, Setting
from .config_session import (
    DEFAULT_INSTRUCTIONS,
    SESSION_SETTINGS,
    VAD_PRESETS,
    VAD_SETTINGS,
    SessionSettings,
    TurnDetection,
)
from .config_upstream import OPENAI_REALTIME_URL, UPSTREAM_SETTINGS, UpstreamSettings

__all__ = [
    "DEFAULT_INSTRUCTIONS", "OPENAI_REALTIME_URL", "VAD_PRESETS", "Config", "ConfigError", "IceServer",
    "TurnDetection", "build_parser", "load_config", "sanitise_instance_id",
]


@dataclass(frozen=True)
class Config(UpstreamSettings, SessionSettings, HttpSettings, NetworkSettings, MediaSettings,
             DeploymentSettings):
    """Every setting of the gateway; each area's fields and checks live in its module (see above)."""

    def __post_init__(self) -> None:
        self._check_upstream()
        self._check_session()
        self._check_http()
        self._check_network()
        self._check_media()
        self._check_deployment()


# --- building from env + CLI ----------------------------------------------------------------

_SETTINGS: tuple[Setting, ...] = (UPSTREAM_SETTINGS + SESSION_SETTINGS + HTTP_SETTINGS + NETWORK_SETTINGS
                                  + MEDIA_SETTINGS + DEPLOYMENT_SETTINGS)
_VAD_SETTINGS: tuple[Setting, ...] = VAD_SETTINGS


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

    def parse(setting: Setting) -> Any:
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
