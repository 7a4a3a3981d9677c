"""Request bodies read defensively: every malformed body is a 400 (or 413/415) naming what is wrong.

aiohttp already bounds the size (``MAX_BODY_BYTES``, a 413). What is inside is parsed here:
JSON with bounded nesting (:func:`~gateway.core.json_input.parse_json`), the SDP offer as UTF-8
text or a multipart form (whose parser raises assorted exceptions on broken input), and the
trickle-ICE fragment as UTF-8 text.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..core.errors import BadRequest, UnsupportedMediaType
from ..core.json_input import parse_json


async def read_json(request: web.Request) -> dict[str, Any]:
    """A JSON object body (an empty body is ``{}``)."""
    if request.content_type not in ("application/json", "application/octet-stream") and request.can_read_body:
        raise UnsupportedMediaType(f"Send JSON (Content-Type: application/json), not {request.content_type}.")
    body = await request.read()
    if not body.strip():
        return {}
    value = parse_json(body)
    if not isinstance(value, dict):
        raise BadRequest("The body must be a JSON object.", code="invalid_json")
    return value


async def read_offer(request: web.Request) -> tuple[str, Any]:
    """The SDP offer and optional session from either request shape OpenAI accepts."""
    if request.content_type == "application/sdp":
        return await _text(request, "The SDP offer", "invalid_offer"), None
    if request.content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        try:
            form = await request.post()
        except web.HTTPException:
            raise  # 413 past MAX_BODY_BYTES
        except Exception as exc:  # aiohttp's form parser: ValueError, AssertionError, LookupError…
            raise BadRequest(f"The form body could not be read: {exc or type(exc).__name__}",
                             code="invalid_offer") from None
        sdp, session = form.get("sdp"), form.get("session")
        if not isinstance(sdp, str):
            raise BadRequest("The multipart body needs an 'sdp' text field.", code="invalid_offer", param="sdp")
        if session is not None:
            if not isinstance(session, str):
                raise BadRequest("The 'session' field must be JSON text.", code="invalid_json", param="session")
            session = parse_json(session, what="The 'session' field", param="session")
        return sdp, session
    raise UnsupportedMediaType("Send the SDP offer with Content-Type: application/sdp "
                               f"(or multipart/form-data), not {request.content_type or 'nothing'}.")


async def read_sdpfrag(request: web.Request) -> str:
    """A trickle-ICE fragment (``application/trickle-ice-sdpfrag``, RFC 8840)."""
    if request.content_type != "application/trickle-ice-sdpfrag":
        raise UnsupportedMediaType("Send candidates as application/trickle-ice-sdpfrag.")
    return await _text(request, "The fragment", "invalid_sdpfrag")


async def _text(request: web.Request, what: str, code: str) -> str:
    body = await request.read()
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"{what} is not UTF-8 text.", code=code) from None
