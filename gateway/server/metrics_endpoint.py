"""``GET /metrics``: who may scrape, and one merged answer for every worker, cached briefly.

With ``METRICS_TOKEN`` a scrape needs ``Authorization: Bearer <token>`` (401 otherwise); without
it only loopback clients may scrape (403 otherwise) — behind a trusted proxy that is the client
the proxy names, so the proxy cannot open it to the world by accident. With several workers the
one answering merges every worker's series (it asks the others over their private sockets) and
keeps the result for :data:`CACHE_S`, so scrapes arriving together cause one fan-out, not one each;
the fan-out goes over the process's :class:`~.forwarding.Forwarder`, so it opens no new connections.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from ..core.errors import Forbidden, Unauthorized
from .client_identity import client_of
from .forwarding import Forwarder, get_from_workers
from .metrics import GatewayMetrics

CACHE_S = 1.0


class MetricsEndpoint:
    def __init__(self, metrics: GatewayMetrics, forwarder: Forwarder, *, token: str | None, worker: int | None,
                 runtime_dir: Path | None) -> None:
        self._metrics = metrics
        self._forwarder = forwarder
        self._token = token
        self._worker = worker
        self._runtime_dir = runtime_dir
        self._cached: tuple[float, bytes] | None = None
        self._merging = asyncio.Lock()
        self.fan_outs = 0  # how many times the other workers were asked (a test and operator figure)

    async def handle(self, request: web.Request) -> web.Response:
        client = client_of(request)
        if client.internal:  # another worker merging: its own client was checked there
            return self._response(self._metrics.render())
        self._check_access(request, client.is_loopback)
        if self._worker is None or self._runtime_dir is None:
            return self._response(self._metrics.render())
        return self._response(await self._merged(self._worker, self._runtime_dir))

    def _check_access(self, request: web.Request, loopback: bool) -> None:
        if self._token is not None:
            scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), self._token.encode()):
                raise Unauthorized("/metrics needs 'Authorization: Bearer <METRICS_TOKEN>'.",
                                   code="invalid_metrics_token", headers={"WWW-Authenticate": "Bearer"})
        elif not loopback:
            raise Forbidden("/metrics answers loopback clients only; set METRICS_TOKEN to scrape from elsewhere.",
                            code="metrics_forbidden")

    async def _merged(self, worker: int, runtime_dir: Path) -> bytes:
        async with self._merging:  # scrapes that arrive during a fan-out share its result
            if self._cached is not None and time.monotonic() - self._cached[0] < CACHE_S:
                return self._cached[1]
            self.fan_outs += 1
            texts = [self._metrics.render().decode()]
            texts += await get_from_workers(self._forwarder, runtime_dir, worker, "/metrics")
            body = _merge(texts)
            self._cached = (time.monotonic(), body)
            return body

    @staticmethod
    def _response(body: bytes) -> web.Response:
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def _merge(texts: list[str]) -> bytes:
    families: dict[str, Metric] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            merged = families.setdefault(family.name, Metric(family.name, family.documentation, family.type))
            merged.samples.extend(family.samples)

    class _Merged:
        def collect(self) -> list[Metric]:
            return list(families.values())

    return generate_latest(_Merged())
