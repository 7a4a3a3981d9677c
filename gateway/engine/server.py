"""The engine's listening socket: a Realtime WebSocket server in front of the loaded models.

Models load and warm up once per process, in a worker thread, while ``/healthz`` answers 503;
then each admitted connection gets a :class:`~.session_runner.SessionRunner`.

Admission (before the WebSocket handshake): ``Authorization: Bearer <ENGINE_API_KEY>`` (401
otherwise), no browser ``Origin`` (403: only servers, i.e. the gateway, talk to the engine), at
most ``max_sessions`` at once (503). ``/healthz`` also says how many sessions run and how many may,
so the gateway can refuse a call up front while the engine is full.
"""

from __future__ import annotations

import asyncio
import hmac
import http
import json
import logging
import time

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.protocol import State

from ..config import DEFAULT_INSTRUCTIONS
from .config import EngineConfig
from .llm import SPOKEN_STYLE
from .model_set import Models
from .model_threads import ModelThreads
from .session_runner import SessionRunner

logger = logging.getLogger(__name__)


def _json_error(status: http.HTTPStatus, code: str, message: str, retry_after: int | None = None) -> Response:
    body = json.dumps({"error": {"type": "invalid_request_error", "code": code, "message": message,
                                 "param": None}}).encode()
    headers = Headers({"Content-Type": "application/json"})
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return Response(status.value, status.phrase, headers, body)


class EngineServer:
    """Owns the listening socket, the models and their worker threads."""

    def __init__(self, config: EngineConfig) -> None:
        self._config = config
        self._models: Models | None = None
        self._threads = ModelThreads()
        self._sessions: set[ServerConnection] = set()

    def _authorized(self, request: Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer":
            given = request.headers.get("api-key", "")
        return hmac.compare_digest(given.strip().encode(), self._config.api_key.encode())

    def _open_sessions(self) -> int:
        self._sessions = {c for c in self._sessions if c.state is not State.CLOSED}
        return len(self._sessions)

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Plain HTTP before the WebSocket handshake: health checks, admission, 503 while loading."""
        path = request.path.split("?")[0]
        if path == "/healthz":
            status = http.HTTPStatus.OK if self._models else http.HTTPStatus.SERVICE_UNAVAILABLE
            body = json.dumps({"status": "ok" if self._models else "loading models", "sessions": self._open_sessions(),
                               "max_sessions": self._config.max_sessions}).encode()
            return Response(status.value, status.phrase, Headers({"Content-Type": "application/json"}), body)
        if path != "/v1/realtime":
            return connection.respond(http.HTTPStatus.NOT_FOUND, "Not found: use /v1/realtime\n")
        if "Origin" in request.headers:
            return _json_error(http.HTTPStatus.FORBIDDEN, "origin_not_allowed",
                               "The engine does not serve browsers: connect through the gateway.")
        if not self._authorized(request):
            return _json_error(http.HTTPStatus.UNAUTHORIZED, "invalid_api_key",
                               "Missing or wrong engine key: send 'Authorization: Bearer <ENGINE_API_KEY>'.")
        if self._models is None:
            return _json_error(http.HTTPStatus.SERVICE_UNAVAILABLE, "engine_loading",
                               "The engine is still loading its models.", retry_after=5)
        if self._open_sessions() >= self._config.max_sessions:
            return _json_error(http.HTTPStatus.SERVICE_UNAVAILABLE, "engine_busy",
                               f"The engine already serves {self._config.max_sessions} sessions "
                               "(ENGINE_MAX_SESSIONS).", retry_after=2)
        self._sessions.add(connection)
        return None

    async def _handle(self, connection: ServerConnection) -> None:
        assert self._models is not None
        try:
            await SessionRunner(connection, self._models, self._threads, self._config).run()
        finally:
            self._sessions.discard(connection)

    async def serve_forever(self) -> None:
        try:
            async with serve(self._handle, self._config.host, self._config.port,
                             process_request=self._process_request, max_size=16 * 1024 * 1024,
                             compression=None) as server:
                logger.info("engine listening on ws://%s:%d/v1/realtime (loading models…)", self._config.host,
                            self._config.port)
                if self._config.api_key_generated:
                    logger.warning("ENGINE_API_KEY is not set: this run's key is %s (give the gateway the same "
                                   "ENGINE_API_KEY to use it)", self._config.api_key)
                started = time.monotonic()
                models = await asyncio.to_thread(Models.load, self._config)
                if self._config.warm_up:
                    warm = await asyncio.to_thread(models.warm_up, f"{DEFAULT_INSTRUCTIONS}\n{SPOKEN_STYLE}")
                    logger.info("warmed up in %s s", warm)
                self._models = models
                logger.info("engine ready in %.1f s", time.monotonic() - started)
                await server.serve_forever()
        finally:
            self._threads.close()

