"""Settings of how the gateway runs: capacity, worker processes, many instances, logs.

Used by ``gateway/cli.py``, ``gateway/server/worker_pool.py`` (workers and their restarts),
``gateway/server/cluster.py`` and ``redis_admission.py`` (instances), ``call_registry.py`` (capacity).
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from .config_parse import Setting, check, check_choice, check_range, check_secret, parse_csv, parse_path

_INSTANCE_ID = re.compile(r"(?!w\d+$)[a-z0-9][a-z0-9-]{0,39}")


def sanitise_instance_id(name: str) -> str:
    """A host or pod name as an id part: lower case, [a-z0-9-] only, at most 40 characters."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:40].strip("-") or "gateway"
    return f"h{cleaned}"[:40] if _INSTANCE_ID.fullmatch(cleaned) is None else cleaned


@dataclass(frozen=True)
class DeploymentSettings:
    # Capacity of this instance.
    max_calls: int = 100
    max_call_duration_s: float = 3600.0  # a call is ended (telling the client) after this; 0 = never
    drain_timeout_s: float = 30.0  # on SIGTERM, calls may finish for this long

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

    def _check_deployment(self) -> None:
        check(self.max_calls > 0, "MAX_CALLS", "must be > 0")
        check(self.max_call_duration_s == 0 or self.max_call_duration_s >= 1, "MAX_CALL_DURATION",
              "must be 0 (no limit) or at least 1 s")
        check(self.drain_timeout_s >= 0, "SHUTDOWN_DRAIN_TIMEOUT", "must be >= 0")
        check_choice("EVENT_LOOP", self.event_loop, ("uvloop", "asyncio"))
        check_range("WORKERS", self.workers, 1, 64)
        check(0 <= self.worker_max_restarts <= 1000, "WORKER_MAX_RESTARTS",
              f"must be 0-1000 (0 = a dying worker stops the gateway), not {self.worker_max_restarts}")
        check_range("WORKER_RESTART_WINDOW", self.worker_restart_window_s, 1, 86400, " s")
        check_range("WORKER_RESTART_BACKOFF", self.worker_restart_backoff_s, 0, 60, " s")
        check(self.worker_restarts >= 0, "WORKER_RESTARTS", "must be >= 0")
        check(_INSTANCE_ID.fullmatch(self.instance_id) is not None, "INSTANCE_ID",
              f"must be 1-40 of a-z, 0-9 and '-', not w<digits>, not {self.instance_id!r}")
        check_secret("GATEWAY_SECRET", self.gateway_secret, 32)
        check(self.redis_url is None or urlsplit(self.redis_url).scheme in ("redis", "rediss", "unix"),
              "REDIS_URL", "must be a redis://, rediss:// or unix:// URL")
        for entry in self.instances:
            name, _, url = entry.partition("=")
            check(_INSTANCE_ID.fullmatch(name) is not None and urlsplit(url).scheme in ("http", "https"),
                  "INSTANCES", f"entries must be name=http://host:port, not {entry!r}")
        check(self.advertise_url is None or urlsplit(self.advertise_url).scheme in ("http", "https"),
              "ADVERTISE_URL", "must be an http:// or https:// URL")


DEPLOYMENT_SETTINGS: tuple[Setting, ...] = (
    Setting("--max-calls", "MAX_CALLS", "max_calls", int, "concurrent calls before answering 503"),
    Setting("--max-call-duration", "MAX_CALL_DURATION", "max_call_duration_s", float,
            "seconds after which a call is ended, telling the client (0 = no limit)"),
    Setting("--shutdown-drain-timeout", "SHUTDOWN_DRAIN_TIMEOUT", "drain_timeout_s", float,
            "seconds calls may continue after SIGTERM"),
    Setting("--event-loop", "EVENT_LOOP", "event_loop", str, "uvloop (default) or asyncio"),
    Setting("--workers", "WORKERS", "workers", int, "gateway processes (default: one per CPU core)"),
    Setting("--worker-index", "WORKER_INDEX", "worker_index", int, "internal: this process's worker number"),
    Setting("--worker-max-restarts", "WORKER_MAX_RESTARTS", "worker_max_restarts", int,
            "worker deaths within WORKER_RESTART_WINDOW that are replaced; one more stops the gateway (0 = none)"),
    Setting("--worker-restart-window", "WORKER_RESTART_WINDOW", "worker_restart_window_s", float,
            "seconds over which worker deaths are counted towards WORKER_MAX_RESTARTS"),
    Setting("--worker-restart-backoff", "WORKER_RESTART_BACKOFF", "worker_restart_backoff_s", float,
            "seconds before a dead worker is replaced (doubled while it keeps dying, at most 30 s)"),
    Setting("--worker-restarts", "WORKER_RESTARTS", "worker_restarts", int,
            "internal: how many times the supervisor has replaced this worker"),
    Setting("--runtime-dir", "RUNTIME_DIR", "runtime_dir", parse_path,
            "directory (ours, not group/world-writable) for the workers' private sockets (default: system temp)"),
    Setting("--instance-id", "INSTANCE_ID", "instance_id", str,
            "this instance's name in every id, for the front to route by (default: host name)"),
    Setting("--gateway-secret", "GATEWAY_SECRET", "gateway_secret", str,
            "signs client secrets so any instance accepts them (the same on every instance)"),
    Setting("--redis-url", "REDIS_URL", "redis_url", str,
            "redis:// for limits and single-use secrets across instances (unset: each instance alone)"),
    Setting("--instances", "INSTANCES", "instances", parse_csv,
            "name=http://address:port of the other instances, for forwarding (or from Redis)"),
    Setting("--advertise-url", "ADVERTISE_URL", "advertise_url", str,
            "this instance's http://address:port for the others (registered in Redis)"),
    Setting("--log-level", "LOG_LEVEL", "log_level", str, "DEBUG, INFO, WARNING or ERROR"),
)
