"""Sideband connections: the application's backend attached to a browser's call.

    GET /v1/realtime?call_id=rtc_…   Authorization: Bearer <gateway API key>   → WebSocket

As with OpenAI's server-side controls, the browser holds the media and the backend holds the
business logic: it sees every server event of the call, in the order the browser's data
channel carries them, and sends client events into it — ``session.update`` (tools,
instructions), ``conversation.item.create`` (a ``function_call_output``), ``response.create``,
``response.cancel``… The backend is trusted: ``LOCKED_SESSION_FIELDS`` does not apply to it,
only the gateway's own audio formats do. What the browser is shown of what the backend sets is
decided in :mod:`gateway.core.visibility` (its instructions and tools stay hidden).

Sideband connections need ``GATEWAY_API_KEYS``: without keys there is no way to tell a backend
from anyone who learned a call id, so the endpoint refuses (403 ``sideband_disabled``).

- The first event is ``session.created`` with the call's session as it is (the same one the
  browser gets, unredacted, when the backend attaches before the session is ready).
- One sideband per call: a newer one takes over (a backend reconnecting after a network blip
  must not be locked out by its own half-dead socket); the older one is told ``error``
  ``sideband_replaced`` and closed with 1008.
- When the call ends, the backend gets the call's last ``error`` (if it ended with one), then
  a close with 1000 and the reason. A backend that stops reading is cut off (1008) once
  ``MAX_QUEUED_EVENTS`` wait for it: the call never waits for its backend.

With several workers the connection may reach one that does not hold the call (the id names
its worker): that worker pipes it frame by frame to the owner over the owner's private Unix
socket (``Via: 1.1 gateway-wN`` on the handshake answer says so), and closing either end
closes the other with the same code. Across instances (the id names its instance) behind a front
that does not route by it, the instance reached pipes it the same way over HTTP to the owner
(its URL from ``INSTANCES`` or Redis; ``Via: 1.1 gateway-<instance>``), which checks the API key
again and sees the backend's address in ``X-Forwarded-For``. The pipe holds one frame at a time
per direction and waits for each to be written (aiohttp pauses a socket past 64 KiB unread), so
what waits for a backend that stops reading is bounded as it is directly: the sockets' buffers,
then the owner's queue, which cuts it off at ``MAX_QUEUED_EVENTS``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from urllib.parse import quote

import aiohttp
from aiohttp import WSMsgType, web

from ..config import Config
from ..core.conversation import State
from ..core.errors import AtCapacity, BadRequest, Forbidden, NotFound, Unauthorized
from ..core.events import Event, ProtocolError, dumps, error_event, loads, new_id
from ..core.visibility import Visibility
from .call import Call
from .call_registry import CallRegistry
from .client_identity import forwarded_headers, is_internal
from .forwarding import Forwarder, PeerUrl, instance_headers
from .logs import call_id_var
from .worker_pool import instance_of, owner, socket_path

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 1 << 20  # a session.update with long instructions and many tools fits
MAX_QUEUED_EVENTS = 2000  # events waiting for a backend that is not reading
HEARTBEAT_S = 20.0  # ping the backend; no pong within half of it closes a dead connection
CLOSE_TIMEOUT_S = 2.0
HANDSHAKE_TIMEOUT_S = 10.0  # the owner's answer to a piped sideband's upgrade
YIELD_EVERY = 32  # frames read in a row before letting the other tasks of the loop run
REPLACED = 1008  # close code of a sideband replaced by a newer one, or cut off for not reading
_RESERVED_CODES = frozenset({1005, 1006, 1015})  # never sent in a close frame
_NOT_FORWARDED = ("connection", "upgrade", "host", "content-length", "keep-alive", "transfer-encoding",
                  "sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions", "sec-websocket-protocol")


@dataclass(frozen=True)
class _Close:
    code: int
    reason: str


class _Stop(Exception):
    """Raised inside a connection's TaskGroup to end every task of it."""


class _Connection:
    """One backend's WebSocket: events out through a bounded queue, client events in."""

    def __init__(self, ws: web.WebSocketResponse, call: Call, control: _CallControl) -> None:
        self._ws = ws
        self._call = call
        self._control = control
        self._queue: asyncio.Queue[str | _Close] = asyncio.Queue()
        self._closing = False
        self._cut_off = asyncio.Event()
        self._failed = False

    def push(self, event: Event) -> None:
        """Queue ``event`` for the backend (called from the call: never waits)."""
        if self._closing:
            return
        if self._queue.qsize() >= MAX_QUEUED_EVENTS:
            logger.warning("sideband cut off: %d events waited for a backend that is not reading", MAX_QUEUED_EVENTS)
            self._closing = True
            self._cut_off.set()
            return
        self._queue.put_nowait(dumps(event))

    def close(self, code: int, reason: str, last: Event | None = None) -> None:
        """Send what is queued, then ``last``, then close (idempotent)."""
        if self._closing:
            return
        if last is not None:
            self._queue.put_nowait(dumps(last))
        self._queue.put_nowait(_Close(code, reason))
        self._closing = True

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._read(), name=f"{self._call.id}-sideband-read")
                tasks.create_task(self._write(), name=f"{self._call.id}-sideband-write")
                tasks.create_task(self._follow_call(), name=f"{self._call.id}-sideband-call")
        except* _Stop:
            pass
        except* ConnectionError:  # the backend's connection broke while an event was being sent
            logger.info("sideband connection lost")
        except* Exception as group:
            for exc in group.exceptions:
                logger.error("sideband task failed", exc_info=exc)
            self._failed = True
        finally:
            self._control.detach(self)
            if not self._ws.closed:
                code, reason = (REPLACED, "the backend did not read its events") if self._cut_off.is_set() \
                    else (1011, "internal error") if self._failed else (1000, "")
                try:
                    await asyncio.wait_for(self._ws.close(code=code, message=reason.encode()), CLOSE_TIMEOUT_S)
                except TimeoutError:
                    pass

    async def _read(self) -> None:
        read = 0
        async for message in self._ws:
            read += 1
            if read % YIELD_EVERY == 0:  # frames already buffered arrive without a suspension
                await asyncio.sleep(0)
            if message.type is WSMsgType.TEXT:
                self._receive(message.data)
            elif message.type is WSMsgType.BINARY:
                self.push(error_event("Send events as JSON text frames.", code="invalid_event"))
        raise _Stop

    def _receive(self, text: str) -> None:
        try:
            event = loads(text)
        except ProtocolError as exc:
            self.push(error_event(str(exc), code=exc.code, event_id=exc.event_id))
            return
        visibility = self._control.visibility
        self._call.receive_trusted(visibility.from_backend(event))
        if visibility.hidden:  # what the backend set, the browser may no longer change
            self._call.conversation.lock(visibility.hidden)

    async def _write(self) -> None:
        while True:
            item = await self._queue.get()
            if isinstance(item, _Close):
                await self._ws.close(code=item.code, message=item.reason.encode()[:123])
                raise _Stop
            await self._ws.send_str(item)

    async def _follow_call(self) -> None:
        cut_off = asyncio.ensure_future(self._cut_off.wait())
        ended = asyncio.ensure_future(self._call.wait_ended())
        try:
            await asyncio.wait({cut_off, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            cut_off.cancel()
            ended.cancel()
        if self._cut_off.is_set():
            raise _Stop
        self.close(1000, f"call ended: {self._call.end_reason}", ended.result())


class _CallControl:
    """A call's side of its sidebands, for the call's whole life: what the browser may see
    (fields stay hidden after the backend disconnects) and the connection attached now."""

    def __init__(self, call: Call) -> None:
        self.visibility = Visibility()
        self.connection: _Connection | None = None
        call.add_observer(self._observe)

    def _observe(self, event: Event) -> Event | None:
        if self.connection is not None:
            self.connection.push(self.visibility.for_backend(event))
        return self.visibility.for_browser(event)

    def attach(self, connection: _Connection) -> None:
        previous, self.connection = self.connection, connection
        if previous is not None:
            logger.info("a newer sideband connection takes over the call")
            previous.close(REPLACED, "replaced by a newer sideband connection", error_event(
                "Another sideband connection attached to this call; this one is closed.",
                code="sideband_replaced", type_="invalid_request_error"))

    def detach(self, connection: _Connection) -> None:
        if self.connection is connection:
            self.connection = None


class Sidebands:
    """The sideband endpoint of one gateway process (``create_app`` routes ``GET /v1/realtime``
    to :meth:`handle`)."""

    def __init__(self, config: Config, calls: CallRegistry, forwarder: Forwarder,
                 peer_url: PeerUrl | None = None) -> None:
        self._config = config
        self._calls = calls
        self._forwarder = forwarder
        self._peer_url = peer_url  # how to reach the other instances (None: this one stands alone)
        self._controls: dict[str, _CallControl] = {}

    async def handle(self, request: web.Request) -> web.StreamResponse:
        call_id = request.query.get("call_id", "")
        if not call_id:
            raise BadRequest("This gateway serves WebRTC calls (POST /v1/realtime/calls); GET /v1/realtime "
                             "attaches a backend to one of them and needs '?call_id=rtc_…'.",
                             code="missing_call_id", param="call_id")
        self._check_api_key(request)
        call_id_var.set(call_id[:64])  # every log line of this connection names the call
        ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=MAX_MESSAGE_BYTES)
        if not ws.can_prepare(request).ok:
            raise BadRequest("GET /v1/realtime is a WebSocket endpoint: send an Upgrade: websocket request.",
                             code="websocket_required")
        elsewhere = await self._owner_elsewhere(request, call_id)
        if elsewhere is not None:
            return await elsewhere
        call = self._live_call(call_id)
        await ws.prepare(request)
        control = self._control(call)
        connection = _Connection(ws, call, control)
        control.attach(connection)
        logger.info("sideband attached%s", " (through another worker)" if is_internal(request) else "")
        if call.conversation.state not in (State.CONNECTING, State.CONFIGURING):
            connection.push({"type": "session.created", "event_id": new_id("event"),
                             "session": call.conversation.session})
        try:
            await connection.run()
        finally:
            logger.info("sideband detached")
            self._forget_ended_calls()
        return ws

    async def _owner_elsewhere(self, request: web.Request, call_id: str) -> Awaitable[web.StreamResponse] | None:
        """The pipe to the instance or sibling worker named in ``call_id``, when that is not this one."""
        if is_internal(request):  # a sibling worker sent it here: the call is ours
            return None
        config = self._config
        named = instance_of(call_id)
        if named is not None and named != config.instance_id and self._peer_url is not None:
            url = await self._peer_url(named)
            if url is not None:
                return _proxy(request, self._forwarder.session(websocket=True),
                              f"{url.rstrip('/')}/v1/realtime?call_id={quote(call_id)}",
                              instance_headers(request, _NOT_FORWARDED), f"gateway-{config.instance_id}",
                              call_id, "instance_unavailable", "gateway instance")
            return None  # an instance nobody knows: this one answers that there is no such call
        worker, runtime_dir, target = config.worker_index, config.runtime_dir, owner(call_id)
        if worker is not None and runtime_dir is not None and target is not None and target != worker \
                and socket_path(runtime_dir, target).exists():
            return _proxy(request, self._forwarder.session(socket_path(runtime_dir, target), websocket=True),
                          f"http://worker/v1/realtime?call_id={quote(call_id)}",
                          forwarded_headers(request, drop=_NOT_FORWARDED), f"gateway-w{worker}",
                          call_id, "worker_unavailable", "gateway process")
        return None

    def _check_api_key(self, request: web.Request) -> None:
        keys = self._config.api_keys
        if not keys:
            raise Forbidden("Sideband connections need GATEWAY_API_KEYS: set them on the gateway and connect "
                            "with 'Authorization: Bearer <gateway API key>'.", code="sideband_disabled")
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not any(hmac.compare_digest(presented.strip().encode(), key.encode())
                                                 for key in keys):
            raise Unauthorized("A sideband connection needs 'Authorization: Bearer <gateway API key>'.",
                               code="invalid_api_key")

    def _live_call(self, call_id: str) -> Call:
        call = self._calls.get(call_id)  # 404 when there is no such call
        if call.ended:
            raise NotFound(f"The call '{call_id}' has ended.", code="call_not_found")
        return call

    def _control(self, call: Call) -> _CallControl:
        self._forget_ended_calls()
        control = self._controls.get(call.id)
        if control is None:
            control = self._controls[call.id] = _CallControl(call)
        return control

    def _forget_ended_calls(self) -> None:
        live = {call.id for call in self._calls}
        for call_id in [call_id for call_id in self._controls if call_id not in live]:
            del self._controls[call_id]


# --- another worker's call -------------------------------------------------------------------


async def _proxy(request: web.Request, http: aiohttp.ClientSession, url: str, headers: dict[str, str], via: str,
                 call_id: str, unavailable: str, holder: str) -> web.StreamResponse:
    """Pipe the backend's WebSocket to ``url``, the owner of the call (``via``: this hop's name)."""
    try:
        async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
            inner = await http.ws_connect(url, headers=headers, max_msg_size=MAX_MESSAGE_BYTES, heartbeat=HEARTBEAT_S,
                                          timeout=aiohttp.ClientWSTimeout(ws_close=CLOSE_TIMEOUT_S))
    except aiohttp.WSServerHandshakeError as exc:
        if exc.status == 404:
            raise NotFound(f"No active call with id '{call_id}'.", code="call_not_found") from None
        if exc.status == 401:  # the owner has other GATEWAY_API_KEYS than this instance
            raise Unauthorized("A sideband connection needs 'Authorization: Bearer <gateway API key>'.",
                               code="invalid_api_key") from None
        raise _unavailable(unavailable, holder) from None
    except (TimeoutError, aiohttp.ClientError, OSError):
        raise _unavailable(unavailable, holder) from None
    try:
        outer = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=MAX_MESSAGE_BYTES)
        outer.headers["Via"] = f"1.1 {via}"
        await outer.prepare(request)
        inward = asyncio.ensure_future(_pipe(outer, inner))
        outward = asyncio.ensure_future(_pipe(inner, outer))
        try:
            done, _ = await asyncio.wait({inward, outward}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            inward.cancel()
            outward.cancel()
            await asyncio.gather(inward, outward, return_exceptions=True)
        first = inward if inward in done else outward
        code, reason = first.result() if first.exception() is None else (1011, "")
        other = inner if first is inward else outer  # the end that did not close yet
        try:
            await asyncio.wait_for(other.close(code=code, message=reason.encode()[:123]), CLOSE_TIMEOUT_S)
        except (TimeoutError, ConnectionError):
            pass
        return outer
    finally:
        if not inner.closed:
            await inner.close()


async def _pipe(source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
                sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse) -> tuple[int, str]:
    """Copy frames until ``source`` closes; the close code and reason to pass on."""
    copied = 0
    while True:
        message = await source.receive()
        copied += 1
        if copied % YIELD_EVERY == 0:  # a fast sender must not hold the loop (the calls' media runs on it)
            await asyncio.sleep(0)
        if message.type is WSMsgType.TEXT:
            await sink.send_str(message.data)
        elif message.type is WSMsgType.BINARY:
            await sink.send_bytes(message.data)
        elif message.type is WSMsgType.CLOSE:
            code = message.data if isinstance(message.data, int) else 1000
            return (1011 if code in _RESERVED_CODES else code), str(message.extra or "")
        elif message.type in (WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            code = source.close_code or 1011
            return (1011 if code in _RESERVED_CODES else code), ""


def _unavailable(code: str, holder: str) -> AtCapacity:
    return AtCapacity(f"The {holder} holding this call is not answering.", code=code, headers={"Retry-After": "2"})
