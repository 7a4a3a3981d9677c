"""The HTTP interface, shaped like OpenAI's Realtime WebRTC interface.

    POST   /v1/realtime/client_secrets   → {"value": "ek_…", "expires_at", "session", "ice_servers"}
    POST   /v1/realtime/calls            SDP offer (or multipart sdp+session) → 201 + SDP answer
    DELETE /v1/realtime/calls/{call_id}  hang up
    GET    /healthz, and the web page at /

Handlers validate and delegate: tokens to :class:`TokenStore`, calls to :class:`CallRegistry`.
Every refusal is a :class:`GatewayError`, rendered as OpenAI-style JSON by one middleware.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from ..config import Config
from ..core.errors import (
    AtCapacity,
    BadRequest,
    Forbidden,
    GatewayError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    Unauthorized,
    UnsupportedMediaType,
)
from ..core.limits import KeyedRateLimiter
from ..core.policy import PolicyError, SessionPolicy, merge_session
from ..core.tokens import TokenStore
from ..webrtc.browser_peer import close_peer
from ..webrtc.ice import IceServers
from ..webrtc.sdp import check_offer, parse_sdpfrag
from .call import Call
from .call_registry import CallRegistry, new_call_id
from .logs import call_id_var
from .metrics import GatewayMetrics
from .worker_pool import client_ip, forwarding_middleware, tag

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Gateway:
    """What the handlers share: the config, the token store and the calls of this process."""

    config: Config
    tokens: TokenStore
    calls: CallRegistry
    policy: SessionPolicy
    metrics: GatewayMetrics
    ice: IceServers
    mint_limiter: KeyedRateLimiter
    call_limiter: KeyedRateLimiter
    draining: bool = False

    def admit(self, request: web.Request, limiter: KeyedRateLimiter) -> None:
        """Refuse while shutting down, and past the per-IP rate (429 with Retry-After)."""
        if self.draining:
            raise AtCapacity("The gateway is shutting down; connect again shortly.", code="shutting_down",
                             headers={"Retry-After": "10"})
        retry_after = limiter.take(client_ip(request), time.monotonic())
        if retry_after is not None:
            raise RateLimited("Too many requests from this address; slow down.",
                              headers={"Retry-After": str(max(1, round(retry_after)))})


CONFIG_KEY = web.AppKey("config", Config)
STATE_KEY = web.AppKey("gateway", Gateway)


# --- middlewares ----------------------------------------------------------------------------


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except GatewayError as exc:
        return _error_response(exc)
    except web.HTTPRequestEntityTooLarge:
        return _error_response(PayloadTooLarge(
            f"The request body is larger than {request.app[CONFIG_KEY].max_body_bytes} bytes."))
    except web.HTTPNotFound:
        return _error_response(NotFound(f"Nothing at {request.path}."))
    except web.HTTPMethodNotAllowed:
        return _error_response(MethodNotAllowed(f"{request.method} is not allowed on {request.path}."))
    except web.HTTPException:
        raise
    except Exception:
        logger.exception("unhandled error in %s %s", request.method, request.path)
        return _error_response(ServerError("The gateway hit an internal error."))


def _error_response(exc: GatewayError) -> web.Response:
    return web.json_response(exc.to_json(), status=exc.status, headers=exc.headers)


@web.middleware
async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer preflights for allowed origins and refuse API calls from other foreign origins."""
    origin = request.headers.get("Origin")
    if origin is None or _same_origin(request, origin):
        return await handler(request)
    allowed = request.app[CONFIG_KEY].allowed_origins
    if "*" not in allowed and origin not in allowed:
        if request.path.startswith("/v1/"):
            return _error_response(Forbidden(f"Origin {origin} is not allowed to use this gateway.",
                                             code="origin_not_allowed"))
        return await handler(request)
    headers = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        headers.update({
            "Access-Control-Allow-Methods": "GET, POST, DELETE, PATCH, OPTIONS",
            "Access-Control-Allow-Headers": request.headers.get("Access-Control-Request-Headers", ""),
            "Access-Control-Max-Age": "600",
        })
        return web.Response(status=204, headers=headers)
    response = await handler(request)
    headers["Access-Control-Expose-Headers"] = "Location, X-Resume-Token"
    response.headers.update(headers)
    return response


def _same_origin(request: web.Request, origin: str) -> bool:
    return urlsplit(origin).netloc == request.host


# --- handlers -------------------------------------------------------------------------------


async def _read_json(request: web.Request) -> dict[str, Any]:
    if request.content_type not in ("application/json", "application/octet-stream") and request.can_read_body:
        raise UnsupportedMediaType(f"Send JSON (Content-Type: application/json), not {request.content_type}.")
    body = await request.read()
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except ValueError as exc:
        raise BadRequest(f"The body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(value, dict):
        raise BadRequest("The body must be a JSON object.", code="invalid_json")
    return value


def _requested_session(gateway: Gateway, session: Any) -> dict[str, Any]:
    """The default session with the client's allowed changes applied."""
    if session is None:
        return gateway.config.default_session()
    try:
        gateway.policy.check(session)
    except PolicyError as exc:
        raise BadRequest(str(exc), code=exc.code, param=exc.param) from None
    return merge_session(gateway.config.default_session(), session)


def _check_api_key(request: web.Request, keys: tuple[str, ...]) -> None:
    if not keys:
        return
    presented = request.headers.get("Authorization", "").partition(" ")[2].strip().encode()
    if not any(hmac.compare_digest(presented, key.encode()) for key in keys):
        raise Unauthorized("Minting client secrets needs 'Authorization: Bearer <gateway API key>'.",
                           code="invalid_api_key")


async def create_client_secret(request: web.Request) -> web.Response:
    gateway = request.app[STATE_KEY]
    config = gateway.config
    gateway.admit(request, gateway.mint_limiter)
    _check_api_key(request, config.api_keys)
    body = await _read_json(request)
    session = _requested_session(gateway, body.get("session"))
    ttl = config.token_ttl_s
    expires_after = body.get("expires_after")
    if expires_after is not None:
        seconds = expires_after.get("seconds") if isinstance(expires_after, dict) else None
        if not isinstance(seconds, int) or isinstance(seconds, bool) or not 10 <= seconds <= config.token_max_ttl_s:
            raise BadRequest(f"expires_after.seconds must be an integer from 10 to {config.token_max_ttl_s}.",
                             code="invalid_value", param="expires_after.seconds")
        ttl = seconds
    secret = gateway.tokens.mint(session, ttl, time.time())
    return web.json_response({
        "value": secret.value,
        "expires_at": secret.expires_at,
        "session": {"id": secret.session_id, "object": "realtime.session", **session},
        "ice_servers": gateway.ice.for_browser(secret.session_id, token_expires_at=secret.expires_at),
    })


def _bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthorized("Missing 'Authorization: Bearer ek_…' header with a client secret.",
                           code="missing_authorization")
    return value.strip()


async def _read_offer(request: web.Request) -> tuple[str, Any]:
    """The SDP offer and optional session from either request shape OpenAI accepts."""
    if request.content_type == "application/sdp":
        body = await request.read()
        try:
            return body.decode("utf-8"), None
        except UnicodeDecodeError:
            raise BadRequest("The SDP offer is not UTF-8 text.", code="invalid_offer") from None
    if request.content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        form = await request.post()
        sdp, session = form.get("sdp"), form.get("session")
        if not isinstance(sdp, str):
            raise BadRequest("The multipart body needs an 'sdp' text field.", code="invalid_offer", param="sdp")
        if session is not None:
            try:
                session = json.loads(session) if isinstance(session, str) else None
            except ValueError:
                raise BadRequest("The 'session' field is not valid JSON.", code="invalid_json",
                                 param="session") from None
        return sdp, session
    raise UnsupportedMediaType("Send the SDP offer with Content-Type: application/sdp "
                               f"(or multipart/form-data), not {request.content_type or 'nothing'}.")


async def create_call(request: web.Request) -> web.Response:
    received_at = time.monotonic()
    gateway = request.app[STATE_KEY]
    gateway.admit(request, gateway.call_limiter)
    token = _bearer(request)
    offer, session_update = await _read_offer(request)
    if token.startswith(tag("rsm_", gateway.config.worker_index)):
        return await _resume_call(gateway, token, offer)
    gateway.tokens.redeem(token, time.time())  # a clear 401 before any parsing work
    if session_update is not None:
        try:
            gateway.policy.check(session_update)
        except PolicyError as exc:
            raise BadRequest(str(exc), code=exc.code, param=exc.param) from None
    check_offer(offer)
    secret = gateway.tokens.claim(token, time.time())
    try:
        gateway.calls.reserve()
    except GatewayError:
        gateway.tokens.release(token)
        raise
    session = merge_session(secret.session, session_update or {})
    call_id = new_call_id(tag("rtc_", gateway.config.worker_index))
    call_id_var.set(call_id)  # inherited by every task this call and aiortc start from here
    call = Call(call_id, gateway.config, session, ice=gateway.ice, metrics=gateway.metrics, created_at=received_at)
    try:
        answer = await call.accept(offer)
    except BaseException:
        gateway.tokens.release(token)
        gateway.calls.release()
        await close_peer(call.pc)
        raise
    gateway.tokens.consume(token)
    gateway.calls.start(call)
    logger.info("call created")
    return _answer(call, answer)


def _answer(call: Call, answer: str) -> web.Response:
    """201 with the SDP answer; ``X-Resume-Token`` (our extension) lets the browser bring the
    call back on a new connection if its network changes."""
    return web.Response(status=201, text=answer, content_type="application/sdp",
                        headers={"Location": f"/v1/realtime/calls/{call.id}", "X-Resume-Token": call.resume_token})


async def _resume_call(gateway: Gateway, token: str, offer: str) -> web.Response:
    call = gateway.calls.by_resume_token(token)
    call_id_var.set(call.id)
    check_offer(offer)
    answer = await call.resume(offer)
    return _answer(call, answer)


async def trickle(request: web.Request) -> web.Response:
    """``PATCH`` with ``application/trickle-ice-sdpfrag`` (RFC 8840, as WHIP uses it): the
    browser's candidates that were not in its offer."""
    gateway = request.app[STATE_KEY]
    call: Call = gateway.calls.get(request.match_info["call_id"])
    if request.content_type != "application/trickle-ice-sdpfrag":
        raise UnsupportedMediaType("Send candidates as application/trickle-ice-sdpfrag.")
    try:
        fragment = (await request.read()).decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("The fragment is not UTF-8 text.", code="invalid_sdpfrag") from None
    await call.add_remote_candidates(parse_sdpfrag(fragment))
    return web.Response(status=204)


async def hang_up(request: web.Request) -> web.Response:
    gateway = request.app[STATE_KEY]
    call: Call = gateway.calls.get(request.match_info["call_id"])
    call.end("client_hangup")
    return web.Response(status=204)


async def healthz(request: web.Request) -> web.Response:
    gateway = request.app[STATE_KEY]
    return web.json_response({"status": "ok", "calls": len(gateway.calls),
                              "max_calls": gateway.config.max_calls})


async def metrics(request: web.Request) -> web.Response:
    body = request.app[STATE_KEY].metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def index(request: web.Request) -> web.FileResponse:
    root = request.app[CONFIG_KEY].web_root
    assert root is not None
    return web.FileResponse(root / "index.html")


def create_app(config: Config) -> web.Application:
    middlewares: list[Any] = [cors_middleware, error_middleware]
    if config.worker_index is not None:  # one of several processes: reach the one owning a call
        middlewares.append(forwarding_middleware(config.worker_index, config.runtime_dir))
    app = web.Application(middlewares=middlewares, client_max_size=config.max_body_bytes)
    gateway_metrics = GatewayMetrics(worker=str(config.worker_index or 0))
    gateway = Gateway(config, TokenStore(prefix=tag("ek_", config.worker_index)),
                      CallRegistry(config.max_calls, gateway_metrics),
                      SessionPolicy.from_fields(config.locked_session_fields), gateway_metrics, IceServers(config),
                      KeyedRateLimiter(config.rate_limit_per_minute, burst=max(5, config.rate_limit_per_minute // 3)),
                      KeyedRateLimiter(config.rate_limit_per_minute, burst=max(5, config.rate_limit_per_minute // 3)))
    app[CONFIG_KEY] = config
    app[STATE_KEY] = gateway
    app.router.add_post("/v1/realtime/client_secrets", create_client_secret)
    app.router.add_post("/v1/realtime/calls", create_call)
    app.router.add_delete("/v1/realtime/calls/{call_id}", hang_up)
    app.router.add_patch("/v1/realtime/calls/{call_id}", trickle)
    app.router.add_post("/v1/realtime/calls/{call_id}/hangup", hang_up)  # OpenAI's spelling
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    if config.web_root is not None and (config.web_root / "index.html").is_file():
        app.router.add_get("/", index)
        app.router.add_static("/", config.web_root)

    async def close_calls(app: web.Application) -> None:
        await app[STATE_KEY].calls.close()

    async def check_ice_servers(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(gateway.ice.keep_checking()) if config.ice_servers else None
        yield
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    app.on_shutdown.append(close_calls)
    app.cleanup_ctx.append(check_ice_servers)
    return app
