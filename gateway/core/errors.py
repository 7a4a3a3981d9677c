"""One exception hierarchy for everything the HTTP interface can refuse, mapped to OpenAI's shape.

Handlers raise; the error middleware in ``server/http_errors.py`` turns any :class:`GatewayError` into
``{"error": {"type", "code", "message", "param"}}`` with the status and headers it carries.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar


class GatewayError(Exception):
    status: ClassVar[int] = 400
    type: ClassVar[str] = "invalid_request_error"
    default_code: ClassVar[str] = "invalid_request"

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.param = param
        self.headers = dict(headers or {})

    def to_json(self) -> dict[str, Any]:
        return {"error": {"type": self.type, "code": self.code, "message": self.message, "param": self.param}}


class BadRequest(GatewayError):
    pass


class Unauthorized(GatewayError):
    status = 401
    default_code = "invalid_client_secret"


class Forbidden(GatewayError):
    status = 403
    default_code = "forbidden"


class NotFound(GatewayError):
    status = 404
    default_code = "not_found"


class MethodNotAllowed(GatewayError):
    status = 405
    default_code = "method_not_allowed"


class Conflict(GatewayError):
    status = 409
    default_code = "conflict"


class PayloadTooLarge(GatewayError):
    status = 413
    default_code = "request_too_large"


class UnsupportedMediaType(GatewayError):
    status = 415
    default_code = "unsupported_content_type"


class RateLimited(GatewayError):
    status = 429
    type = "rate_limit_error"
    default_code = "rate_limited"


class ServerError(GatewayError):
    status = 500
    type = "server_error"
    default_code = "internal_error"


class AtCapacity(GatewayError):
    status = 503
    type = "server_error"
    default_code = "at_capacity"

