"""Short-lived TURN credentials (the "TURN REST API" scheme coturn calls ``use-auth-secret``).

The gateway and the TURN server share a secret; the gateway mints, per client secret, a
username ``<expiry unix time>:<id>`` and a password ``base64(HMAC-SHA1(secret, username))``.
coturn recomputes the password and refuses it after the expiry, so nothing leaks for long and
no per-user state is kept anywhere. The shared secret itself never leaves the server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TurnCredential:
    username: str
    password: str
    expires_at: int


def mint(secret: str, identity: str, ttl_s: int, clock: Callable[[], float] = time.time) -> TurnCredential:
    expires_at = int(clock()) + ttl_s
    username = f"{expires_at}:{identity}"
    digest = hmac.new(secret.encode("utf-8"), username.encode("utf-8"), hashlib.sha1).digest()
    return TurnCredential(username, base64.b64encode(digest).decode("ascii"), expires_at)


def browser_ice_servers(urls: Sequence[str], credential: TurnCredential | None) -> list[dict[str, Any]]:
    """W3C RTCIceServer entries: STUN URLs as they are, every TURN URL with the credential."""
    stun = [url for url in urls if url.startswith("stun:")]
    turn = [url for url in urls if url.startswith(("turn:", "turns:"))]
    servers: list[dict[str, Any]] = []
    if stun:
        servers.append({"urls": stun})
    if turn and credential is not None:
        servers.append({"urls": turn, "username": credential.username, "credential": credential.password})
    return servers
