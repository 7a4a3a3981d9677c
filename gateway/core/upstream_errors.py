"""What an upstream's errors mean for the call, and what of their text may reach the browser.

Upstream error messages are written for the API's account holder: they can name hosts, URLs,
organisation ids and masked keys (``Incorrect API key provided: sk-...abcd``). The browser gets
an error's ``type``, ``code``, ``param`` and ``event_id`` as they are, and its ``message`` only
when nothing in it looks like a key, host, address, URL or path; otherwise a plain sentence
naming the code replaces it and the original goes to the gateway's log. Sans-I/O.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from .events import Event, error_event, server_event

logger = logging.getLogger(__name__)

# Upstream error codes after which the session cannot go on.
FATAL_ERROR_CODES = frozenset(
    {"invalid_api_key", "insufficient_quota", "billing_hard_limit_reached", "account_deactivated",
     "model_not_found"}
)
# The provider's session cap: the link moves to a new session, the client never hears of it.
SESSION_END_ERRORS = frozenset({"session_expired"})
# Errors our own bookkeeping events may legitimately cause (a race with the upstream's own
# VAD interruption): logged, never shown to the user.
BENIGN_INTERNAL_ERRORS = frozenset({"response_cancel_not_active"})

_TLDS = ("com|net|org|io|ai|dev|app|cloud|co|us|eu|uk|de|fr|jp|cn|br|in|local|internal|lan|svc|"
         "azure|amazonaws|windows")
_UNSAFE = re.compile(
    r"[a-z][a-z0-9+.-]*://"                            # any URL (https://, wss://)
    r"|\b(?:sk|rk|ek|org|proj|key)[-_][A-Za-z0-9*._-]{2,}"  # API keys and account ids, masked or not
    r"|\*{3,}|\.{3}[A-Za-z0-9]{3,}"                    # masking: sk-****abcd, sk-...abcd
    r"|\bbearer\s+\S+"                                 # an Authorization value
    r"|\b(?:\d{1,3}\.){3}\d{1,3}\b"                    # IPv4
    r"|(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{1,4}"           # IPv6 (and anything that looks like it)
    rf"|\b(?:[a-z0-9-]+\.)+(?:{_TLDS})\b"              # host names
    r"|\blocalhost\b"
    r"|/[\w.-]+/[\w./-]+"                              # file system or URL paths
    r"|\b(?=[A-Za-z_-]*\d)[A-Za-z0-9_-]{32,}",         # long opaque tokens
    re.IGNORECASE,
)


def unsafe(text: str) -> bool:
    """Whether ``text`` may carry something the browser must not see."""
    return _UNSAFE.search(text) is not None


def safe_text(text: str, fallback: str) -> str:
    return fallback if unsafe(text) else text


def _fallback(error: dict[str, Any]) -> str:
    code = error.get("code")
    return (f"The assistant's service reported an error ({code})." if isinstance(code, str) and not unsafe(code)
            else "The assistant's service reported an error.")


def _clean(error: Any) -> Any:
    """A copy of ``error`` whose message may be shown, or ``error`` itself when it already may."""
    if not isinstance(error, dict):
        return error
    message = error.get("message")
    if not isinstance(message, str) or not unsafe(message):
        return error
    logger.warning("upstream error shown to the client without its text: %s", message)
    return {**error, "message": _fallback(error)}


def for_client(event: Event) -> Event:
    """``event`` as the browser may see it: error texts from the upstream cleaned (a copy if changed)."""
    if "error" in event:
        error = _clean(event["error"])
        if error is not event["error"]:
            event = {**event, "error": error}
    response = event.get("response")
    if isinstance(response, dict) and isinstance(response.get("status_details"), dict):
        details = response["status_details"]
        error = _clean(details.get("error"))
        if error is not details.get("error"):
            event = {**event, "response": {**response, "status_details": {**details, "error": error}}}
    return event


def reconnecting_error(reason: str) -> Event:
    """What the client is told when the upstream session was lost (``reason``: a code, no text)."""
    return error_event(f"The connection to the assistant was lost ({reason}); reconnecting.",
                       code="upstream_reconnecting", type_="server_error")


def lost_response_done(response_id: str) -> Event:
    """The ``response.done`` that settles a response whose upstream session died under it."""
    return server_event("response.done", response={
        "id": response_id, "object": "realtime.response", "status": "failed",
        "status_details": {"type": "failed", "error": {"type": "server_error", "code": "upstream_lost"}},
        "output": []})


def rejected_configuration(error: dict[str, Any]) -> Event:
    """What the client is told when the upstream refused the gateway's own session configuration."""
    logger.warning("upstream rejected the session configuration: %s", error)
    message = safe_text(str(error.get("message", "")), "(details in the gateway's log)")
    return error_event(f"The upstream rejected the gateway's session configuration: {message}",
                       code=error.get("code"), type_=error.get("type", "invalid_request_error"))
