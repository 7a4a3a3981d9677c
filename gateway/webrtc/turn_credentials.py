"""Short-lived TURN credentials (the "TURN REST API" scheme coturn calls ``use-auth-secret``).

The gateway and the TURN server share a secret; the gateway mints, per client secret, a
username ``<expiry unix time>:<id>`` and a password ``base64(HMAC-SHA1(secret, username))``.
coturn recomputes the password and refuses it after the expiry, so nothing leaks for long and
no per-user state is kept anywhere. The shared secret itself never leaves the server.

coturn checks the expiry on every authenticated request, allocation refreshes included, so a
credential must outlive the call that uses it: a call may start at the last second of its
client secret, hence ``start_by``. Everything here is plain computation with an injectable
clock; :mod:`gateway.webrtc.ice` does the networking.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

# RFC 8489 §14.3: USERNAME is at most 513 bytes.
MAX_USERNAME_BYTES = 513

# What both ends understand: browsers reject anything else in RTCPeerConnection's constructor,
# and aiortc silently ignores it (turns: over DTLS, stuns:, IPv6 literals it cannot parse).
_ICE_URL = re.compile(
    r"(?P<scheme>stun|turn|turns):(?P<host>[A-Za-z0-9.-]+)(?::(?P<port>[0-9]{1,5}))?"
    r"(?:\?transport=(?P<transport>udp|tcp))?"
)


@dataclass(frozen=True)
class TurnCredential:
    username: str
    password: str = field(repr=False)
    expires_at: int


def mint(secret: str, identity: str, ttl_s: int, clock: Callable[[], float] = time.time, *,
         start_by: float | None = None) -> TurnCredential:
    """A credential valid ``ttl_s`` seconds after ``start_by`` (default: now).

    ``identity`` (a session or call id) only names the user in coturn's logs and quota.
    """
    if not secret:
        raise ValueError("a TURN secret is required")
    if ttl_s <= 0:
        raise ValueError(f"TURN credential lifetime must be > 0 s, not {ttl_s}")
    if not identity or not identity.isprintable():
        raise ValueError(f"TURN identity must be printable and non-empty, not {identity!r}")
    expires_at = int(max(clock(), start_by or 0.0)) + ttl_s
    username = f"{expires_at}:{identity}"
    if len(username.encode("utf-8")) > MAX_USERNAME_BYTES:
        raise ValueError(f"TURN username longer than {MAX_USERNAME_BYTES} bytes")
    return TurnCredential(username, password_for(secret, username), expires_at)


def password_for(secret: str, username: str) -> str:
    """What coturn computes from its ``static-auth-secret`` to check a username."""
    digest = hmac.new(secret.encode("utf-8"), username.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def is_turn(url: str) -> bool:
    return url.startswith(("turn:", "turns:"))


def ice_url_problem(url: str) -> str | None:
    """Why ``url`` would not work on both ends of a call, or None.

    Meant for start-up validation: a bad URL otherwise throws in every browser's
    ``RTCPeerConnection`` constructor, or is dropped without a word by aiortc.
    """
    match = _ICE_URL.fullmatch(url)
    if match is None:
        return ("must look like stun:host[:port], turn:host[:port][?transport=udp|tcp] or "
                f"turns:host[:port][?transport=tcp] (host name or IPv4), not {url!r}")
    if match["port"] is not None and not 0 < int(match["port"]) < 65536:
        return f"has a port outside 1-65535: {url!r}"
    if match["scheme"] == "stun" and match["transport"]:
        return f"stun: URLs take no ?transport: {url!r}"
    if match["scheme"] == "turns" and match["transport"] == "udp":
        return f"turns: runs over TLS/TCP only (DTLS is unsupported by browsers and aiortc): {url!r}"
    return None


def browser_ice_servers(urls: Sequence[str], credential: TurnCredential | None) -> list[dict[str, Any]]:
    """W3C RTCIceServer entries: STUN URLs as they are, every TURN URL with the credential.

    Browsers try every URL of every entry, so one entry per kind keeps the list short.
    """
    stun = [url for url in urls if url.startswith("stun:")]
    turn = [url for url in urls if is_turn(url)]
    servers: list[dict[str, Any]] = []
    if stun:
        servers.append({"urls": stun})
    if turn and credential is not None:
        servers.append({"urls": turn, "username": credential.username, "credential": credential.password})
    return servers
