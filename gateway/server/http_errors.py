"""Every refusal as OpenAI-shaped JSON: ``{"error": {"type", "code", "message", "param"}}``.

Handlers raise a :class:`~gateway.core.errors.GatewayError`; this middleware renders it, and maps
aiohttp's own refusals (too large, no route, wrong method) to the same shape. Anything else is a
bug: logged with its traceback, answered as a 500 without one.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from ..core.errors import GatewayError, MethodNotAllowed, NotFound, PayloadTooLarge, ServerError

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(exc: GatewayError) -> web.Response:
    return web.json_response(exc.to_json(), status=exc.status, headers=exc.headers)


def error_middleware(max_body_bytes: int) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    @web.middleware
    async def render_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except GatewayError as exc:
            return error_response(exc)
        except web.HTTPRequestEntityTooLarge:
            return error_response(PayloadTooLarge(f"The request body is larger than {max_body_bytes} bytes."))
        except web.HTTPNotFound:
            return error_response(NotFound(f"Nothing at {request.path}."))
        except web.HTTPMethodNotAllowed:
            return error_response(MethodNotAllowed(f"{request.method} is not allowed on {request.path}."))
        except web.HTTPException:
            raise
        except Exception:
            logger.exception("unhandled error in %s %s", request.method, request.path)
            return error_response(ServerError("The gateway hit an internal error."))

    return render_errors
