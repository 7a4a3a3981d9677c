"""The WebSocket to the Realtime API (OpenAI, a compatible endpoint, or the local engine).

Thin I/O: it opens the socket with the right auth header, turns frames into event dicts and
back, and maps handshake failures to :class:`UpstreamError` with a reason a user can act on.
What the events mean is the conversation core's business.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.protocol import State
from websockets.version import version as websockets_version

from ..core.events import Event, ProtocolError, dumps, loads
from ..core.upstream_errors import safe_text

logger = logging.getLogger(__name__)


class _RedactingLogger(logging.LoggerAdapter):
    """websockets logs every handshake header at DEBUG, the API key's header included."""

    SECRET_HEADERS = frozenset({"authorization", "api-key", "openai-organization"})

    def log(self, level: int, msg: object, *args: object, **kwargs: object) -> None:
        if len(args) == 2 and str(args[0]).lower() in self.SECRET_HEADERS:
            args = (args[0], "<redacted>")
        super().log(level, msg, *args, **kwargs)  # type: ignore[arg-type]


_WIRE_LOGGER = _RedactingLogger(logging.getLogger("websockets.client"), {})


class UpstreamError(Exception):
    """The upstream could not be reached or ended the session; ``fatal`` means do not retry.

    The message (for the log) may carry the upstream's own text: its HTTP body, a host and
    port. ``public`` is what a browser may be told: the gateway's own words, plus the
    upstream's only when they name no key, host or URL."""

    def __init__(self, message: str, code: str, *, fatal: bool = False, public: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.fatal = fatal
        self.public = safe_text(message, public) if public is not None else message


def realtime_url(base: str, model: str) -> str:
    """Add ``model=`` unless the URL already names a model or an Azure deployment."""
    parts = urlsplit(base)
    query = dict(parse_qsl(parts.query))
    if "model" not in query and "deployment" not in query:
        query["model"] = model
    return urlunsplit(parts._replace(query=urlencode(query)))


def auth_headers(header: str, api_key: str | None) -> dict[str, str]:
    if not api_key:
        return {}
    if header.lower() == "authorization":
        return {"Authorization": f"Bearer {api_key}"}
    return {header: api_key}


def _handshake_error(exc: Exception) -> UpstreamError:
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        body = exc.response.body.decode("utf-8", "replace")[:300] if exc.response.body else ""
        known = {401: ("The upstream rejected the API key (HTTP 401).", "invalid_api_key", True),
                 403: ("The upstream refused access (HTTP 403).", "forbidden", True),
                 404: ("The upstream has no Realtime endpoint or model here (HTTP 404).", "model_not_found", True),
                 429: ("The upstream is rate limiting or out of quota (HTTP 429).", "rate_limited", False)}
        text, code, fatal = known.get(status, (f"The upstream answered HTTP {status}.", "upstream_unavailable", False))
        return UpstreamError(f"{text} {body}".strip(), code, fatal=fatal, public=text)
    return UpstreamError(f"Could not reach the upstream: {exc}", "upstream_unavailable",
                         public="Could not reach the upstream.")


class Upstream:
    """One open Realtime WebSocket."""

    def __init__(self, connection: ClientConnection) -> None:
        self._ws = connection

    @classmethod
    async def connect(cls, url: str, headers: Mapping[str, str], timeout: float, ping_s: float = 5.0) -> Upstream:
        """``ping_s``: ping interval and timeout, so a hung upstream is noticed within 2 × ping_s."""
        try:
            connection = await connect(
                url,
                additional_headers=dict(headers),
                open_timeout=timeout,
                ping_interval=ping_s,
                ping_timeout=ping_s,
                close_timeout=1.0,  # a hung peer never answers our close frame
                max_size=16 * 1024 * 1024,
                compression=None,  # audio does not compress; deflate only costs CPU and latency
                logger=_WIRE_LOGGER,
                user_agent_header=f"realtime-gateway websockets/{websockets_version}",
            )
        except (TimeoutError, OSError, InvalidHandshake) as exc:
            raise _handshake_error(exc) from None
        return cls(connection)

    async def send(self, event: Event) -> None:
        await self._ws.send(dumps(event))

    async def send_text(self, message: str) -> None:
        """Send an already serialized event (the call's writer queue holds text)."""
        await self._ws.send(message)

    def send_now(self, message: str) -> bool:
        """Write an already serialized event without yielding, when nothing can be ahead of it
        and the socket is not backed up (nearly always): what :meth:`send_text` does, minus its
        coroutine and context manager (the mic sends 50 of these a second per call). False: the
        caller queues it for :meth:`send_text`, which waits for the socket."""
        ws = self._ws
        if (ws.send_in_progress is not None or ws.paused or ws.protocol.state is not State.OPEN
                or ws.transport.is_closing()):
            return False
        ws.protocol.send_text(message.encode())
        try:
            ws.send_data()
        except Exception as exc:  # as websockets' own send(): the connection ends, the reader sees why
            logger.debug("upstream write failed: %r", exc)
            ws.set_connection_exc(exc)
            ws.transport.abort()
        return True

    async def events(self) -> AsyncIterator[Event]:
        """Server events until the socket closes; ends quietly on a normal close."""
        try:
            async for message in self._ws:
                try:
                    yield loads(message)
                except ProtocolError as exc:
                    logger.warning("upstream sent something that is not an event: %s", exc)
        except ConnectionClosed as exc:
            if exc.rcvd is None or exc.rcvd.code not in (1000, 1001):
                reason = exc.rcvd.reason if exc.rcvd else "no close frame"
                raise UpstreamError(f"The upstream connection dropped ({reason}).", "upstream_disconnected",
                                    public="The upstream connection dropped.") from None

    async def close(self) -> None:
        await self._ws.close()
