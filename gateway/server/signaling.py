"""The HTTP interface, shaped like OpenAI's Realtime WebRTC interface.

    POST   /v1/realtime/client_secrets   → {"value": "ek_…", "expires_at", "session", "ice_servers"}
    POST   /v1/realtime/calls            SDP offer (or multipart sdp+session) → 201 + SDP answer
    PATCH  /v1/realtime/calls/{call_id}  trickled candidates (RFC 8840)
    DELETE /v1/realtime/calls/{call_id}  hang up
    GET    /healthz, /metrics, and the web page at /

Handlers validate and delegate: tokens to :class:`TokenStore`, calls to :class:`CallRegistry`,
limits to the gateway-wide :class:`~.admission.SharedAdmission`. Around them, outermost first:

- :mod:`.client_identity` — who the client is (socket peer, or what a trusted proxy says; on a
  forwarded request, what the first worker verified);
- :mod:`.origin` — same-origin or ``ALLOWED_ORIGINS`` (CORS);
- :mod:`.http_errors` — every refusal (a :class:`GatewayError`) as OpenAI-style JSON;
- :mod:`.forwarding` — with several workers, a request about another worker's call goes there.

Bodies are read by :mod:`.request_bodies`; ``/metrics`` is :mod:`.metrics_endpoint`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import Gauge

from ..config import Config
from ..core.errors import AtCapacity, BadRequest, RateLimited, Unauthorized
from ..core.limits import Rate
from ..core.policy import PolicyError, SessionPolicy, merge_session
from ..core.tokens import TokenStore
from ..media.native.shared_media import SharedMedia
from ..webrtc.browser_peer import close_peer
from ..webrtc.ice import IceServers
from ..webrtc.sdp import check_offer, parse_sdpfrag
from .admission import LocalAdmission, SharedAdmission, SqliteAdmission, store_path
from .call import Call
from .call_registry import CallRegistry, new_call_id
from .client_identity import Client, TrustedProxies, client_of, identity_middleware
from .cluster import Cluster, redis_client
from .engine_capacity import EngineCapacity
from .forwarding import Forwarder, forwarding_middleware
from .http_errors import error_middleware
from .logs import call_id_var
from .metrics import GatewayMetrics
from .metrics_endpoint import MetricsEndpoint
from .origin import cors_middleware
from .redis_admission import RedisAdmission
from .request_bodies import read_json, read_offer, read_sdpfrag
from .sideband import Sidebands
from .worker_pool import tag

logger = logging.getLogger(__name__)

TRICKLE_RATE_FACTOR = 10  # PATCH requests a client may send per call-creation request it may send


@dataclass
class Gateway:
    """What the handlers share: the config, the token store and the calls of this process."""

    config: Config
    tokens: TokenStore
    calls: CallRegistry
    policy: SessionPolicy
    metrics: GatewayMetrics
    ice: IceServers
    admission: SharedAdmission
    cluster: Cluster
    engine_capacity: EngineCapacity  # is the local engine full? (its pooled probe)
    native_media: SharedMedia = field(default_factory=SharedMedia)  # the calls' pacer and heap (MEDIA_PATH=native)
    draining: bool = False

    async def admit(self, client: Client, action: str) -> None:
        """Refuse while shutting down, and past the client's rate for ``action`` (429 with
        Retry-After): ``mint`` and ``call`` at ``RATE_LIMIT``, ``trickle`` at ten times it."""
        if self.draining:
            raise AtCapacity("The gateway is shutting down; connect again shortly.", code="shutting_down",
                             headers={"Retry-After": "10"})
        per_minute = self.config.rate_limit_per_minute * (TRICKLE_RATE_FACTOR if action == "trickle" else 1)
        retry_after = await self.admission.take(f"{action}:{client.identity}", Rate.of(per_minute))
        if retry_after is not None:
            raise RateLimited("Too many requests from this address; slow down.",
                              headers={"Retry-After": str(max(1, round(retry_after)))})


CONFIG_KEY = web.AppKey("config", Config)
STATE_KEY = web.AppKey("gateway", Gateway)


# --- handlers -------------------------------------------------------------------------------


def _requested_session(gateway: Gateway, session: Any) -> dict[str, Any]:
    """The default session with the client's allowed changes applied."""
    default = gateway.config.default_session()
    return default if session is None else merge_session(default, _allowed(gateway, session, default))


def _allowed(gateway: Gateway, session: Any, current: dict[str, Any]) -> dict[str, Any]:
    """What of a requested session the policy lets through. As with ``session.update``, locked
    fields are left out rather than refused: OpenAI's own client-secret body always names a
    ``model``, and drop-in clients must not fail for it (a different value is logged)."""
    try:
        allowed, touched = gateway.policy.strip(session, current)
    except PolicyError as exc:
        raise BadRequest(str(exc), code=exc.code, param=exc.param) from None
    if touched:
        logger.info("requested session: kept the gateway's %s", ", ".join(touched))
    return allowed


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
    await gateway.admit(client_of(request), "mint")
    _check_api_key(request, config.api_keys)
    body = await read_json(request)
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


async def create_call(request: web.Request) -> web.Response:
    received_at = time.monotonic()
    gateway = request.app[STATE_KEY]
    client = client_of(request)
    await gateway.admit(client, "call")
    token = _bearer(request)
    offer, session_update = await read_offer(request)
    config = gateway.config
    if token.startswith(tag("rsm_", config.worker_index, config.instance_id)):
        return await _resume_call(gateway, token, offer)
    minted = gateway.tokens.redeem(token, time.time())  # a clear 401 before any parsing work
    update = None if session_update is None else _allowed(gateway, session_update, dict(minted.session))
    candidates = check_offer(offer)
    await gateway.engine_capacity.refuse_if_full()  # before the secret is claimed: nothing to give back
    secret = gateway.tokens.claim(token, time.time())
    spend_shared = gateway.tokens.signed and config.client_secret_reuse == "single"
    call_id = new_call_id(tag("rtc_", config.worker_index, config.instance_id))
    try:
        if spend_shared:  # once in the whole cluster, not once per instance
            await gateway.cluster.claim_secret(secret.id, secret.expires_at)
        try:
            await gateway.calls.reserve(call_id, client.identity)
        except BaseException:  # refused, or the client went away: the secret may be used again
            if spend_shared:
                await gateway.cluster.release_secret(secret.id)
            raise
    except BaseException:
        gateway.tokens.release(token)
        raise
    session = merge_session(secret.session, update or {})
    call_id_var.set(call_id)  # inherited by every task this call and aiortc start from here
    call = Call(call_id, gateway.config, session, ice=gateway.ice, metrics=gateway.metrics, created_at=received_at,
                native_media=gateway.native_media)
    try:
        answer = await call.accept(offer)
    except BaseException:
        gateway.tokens.release(token)
        if spend_shared:
            await gateway.cluster.release_secret(secret.id)
        await gateway.calls.release(call_id)
        await close_peer(call.pc)
        raise
    gateway.tokens.consume(token)
    gateway.calls.start(call, candidates)
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
    candidates = check_offer(offer)
    answer = await call.resume(offer)  # 409 unless the call is waiting for its vanished browser
    gateway.calls.new_connection(call, candidates)
    return _answer(call, answer)


async def trickle(request: web.Request) -> web.Response:
    """``PATCH`` with ``application/trickle-ice-sdpfrag`` (RFC 8840, as WHIP uses it): the
    browser's candidates that were not in its offer."""
    gateway = request.app[STATE_KEY]
    await gateway.admit(client_of(request), "trickle")
    call: Call = gateway.calls.get(request.match_info["call_id"])
    candidates = parse_sdpfrag(await read_sdpfrag(request))
    gateway.calls.add_candidates(call, len(candidates))
    try:
        await call.add_remote_candidates(candidates)
    except (AssertionError, ValueError, TypeError, KeyError, IndexError) as exc:  # aiortc/aioice on odd input
        raise BadRequest(f"The candidate could not be added: {exc or type(exc).__name__}",
                         code="invalid_sdpfrag") from None
    return web.Response(status=204)


async def hang_up(request: web.Request) -> web.Response:
    """Idempotent: a call that just ended (the browser closed its peer connection a moment
    before its DELETE arrived, as a page does when it hangs up) is hung up already."""
    gateway = request.app[STATE_KEY]
    call_id = request.match_info["call_id"]
    if gateway.calls.ended_recently(call_id):
        return web.Response(status=204)
    call: Call = gateway.calls.get(call_id)
    call.end("client_hangup")
    return web.Response(status=204)


async def healthz(request: web.Request) -> web.Response:
    """200 while taking calls; 503 ``draining`` from SIGTERM on, so a front (nginx health checks,
    a Kubernetes readiness probe) stops sending new calls while the existing ones finish."""
    gateway = request.app[STATE_KEY]
    body = {"status": "draining" if gateway.draining else "ok", "instance": gateway.config.instance_id,
            "calls": len(gateway.calls), "max_calls": gateway.config.max_calls}
    return web.json_response(body, status=503 if gateway.draining else 200)


async def index(request: web.Request) -> web.FileResponse:
    root = request.app[CONFIG_KEY].web_root
    assert root is not None
    return web.FileResponse(root / "index.html")


def _admission(config: Config) -> SharedAdmission:
    """Redis for a cluster of instances; in memory for one process; the supervisor's SQLite
    store for the workers of a host."""
    if config.redis_url is not None:
        holder = config.instance_id if config.worker_index is None else f"{config.instance_id}-w{config.worker_index}"
        return RedisAdmission(redis_client(config.redis_url), holder, config.max_calls, config.max_calls_per_client)
    if config.worker_index is None or config.runtime_dir is None:
        return LocalAdmission(config.max_calls, config.max_calls_per_client)
    return SqliteAdmission(store_path(config.runtime_dir), config.max_calls, config.max_calls_per_client)


def create_app(config: Config) -> web.Application:
    middlewares: list[Any] = [identity_middleware(TrustedProxies(config.trusted_proxies)),
                              cors_middleware(config.allowed_origins), error_middleware(config.max_body_bytes)]
    gateway_metrics = GatewayMetrics(worker=str(config.worker_index or 0), restarts=config.worker_restarts)
    admission = _admission(config)
    cluster = Cluster(config, admission if isinstance(admission, RedisAdmission) else None)
    if isinstance(admission, RedisAdmission):
        shared_up = Gauge("gateway_shared_store_up", "1 while Redis (REDIS_URL) answers", ["worker"],
                          registry=gateway_metrics.registry).labels(worker=str(config.worker_index or 0))
        shared_up.set(1)
        admission.on_change = lambda up: shared_up.set(1 if up else 0)
    many_instances = config.redis_url is not None or bool(config.instances)
    forwarder = Forwarder()  # this process's pooled clients towards the owners of calls
    if many_instances or (config.worker_index is not None and config.runtime_dir is not None):
        middlewares.append(forwarding_middleware(  # reach the worker (or instance) owning a call
            forwarder, config.worker_index, config.runtime_dir, instance=config.instance_id,
            peer_url=cluster.url_of if many_instances else None, signed=config.gateway_secret is not None))
    app = web.Application(middlewares=middlewares, client_max_size=config.max_body_bytes)
    gateway = Gateway(config,
                      TokenStore(prefix=tag("ek_", config.worker_index, config.instance_id),
                                 reuse=config.client_secret_reuse == "until_expiry",
                                 signing_key=config.gateway_secret.encode() if config.gateway_secret else None),
                      CallRegistry(admission, gateway_metrics),
                      SessionPolicy.from_fields(config.locked_session_fields), gateway_metrics, IceServers(config),
                      admission, cluster, EngineCapacity(config))
    metrics = MetricsEndpoint(gateway_metrics, forwarder, token=config.metrics_token, worker=config.worker_index,
                              runtime_dir=config.runtime_dir)
    app[CONFIG_KEY] = config
    app[STATE_KEY] = gateway
    app.router.add_post("/v1/realtime/client_secrets", create_client_secret)
    app.router.add_post("/v1/realtime/calls", create_call)
    app.router.add_delete("/v1/realtime/calls/{call_id}", hang_up)
    app.router.add_patch("/v1/realtime/calls/{call_id}", trickle)
    app.router.add_post("/v1/realtime/calls/{call_id}/hangup", hang_up)  # OpenAI's spelling
    app.router.add_get("/v1/realtime", Sidebands(config, gateway.calls, forwarder,  # a backend attached to a call
                                                 cluster.url_of if many_instances else None).handle)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics.handle)
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

    async def close_admission(app: web.Application) -> None:
        await admission.close()

    async def join_cluster(app: web.Application) -> AsyncIterator[None]:
        cluster.announce()
        task = asyncio.create_task(cluster.run())
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    app.on_shutdown.append(close_calls)
    app.cleanup_ctx.append(check_ice_servers)
    app.cleanup_ctx.append(join_cluster)
    app.cleanup_ctx.append(forwarder.context)
    app.cleanup_ctx.append(gateway.engine_capacity.context)
    app.cleanup_ctx.append(gateway.native_media.context)
    app.on_cleanup.append(close_admission)
    return app
