"""Short-lived client secrets (``ek_…``): what a browser holds instead of the real API key.

A secret is an unguessable random value bound to one session configuration and an expiry; the
browser presents it once to create its call (single use: a leaked secret cannot start a second
call). The store is in memory and bounded: expired secrets are purged as new ones are minted.
Sans-I/O: the caller passes ``now`` (unix seconds, since expiries are wall-clock times).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import RateLimited, Unauthorized
from .events import new_id

PREFIX = "ek_"


@dataclass(frozen=True)
class ClientSecret:
    value: str
    session_id: str
    expires_at: int  # unix seconds
    session: Mapping[str, Any]


class TokenStore:
    def __init__(self, *, capacity: int = 100_000, prefix: str = PREFIX) -> None:
        """``prefix``: ``ek_`` (or ``ek_w2_`` in worker 2, so a call is created where it was minted)."""
        self._prefix = prefix
        self._capacity = capacity
        self._secrets: dict[str, ClientSecret] = {}
        self._claimed: set[str] = set()  # secrets whose call is being set up right now

    def __len__(self) -> int:
        return len(self._secrets)

    def mint(self, session: Mapping[str, Any], ttl_s: int, now: float) -> ClientSecret:
        if len(self._secrets) >= self._capacity:
            self._purge(now)
            if len(self._secrets) >= self._capacity:
                raise RateLimited("Too many outstanding client secrets; try again shortly.")
        secret = ClientSecret(self._prefix + secrets.token_urlsafe(32), new_id("sess"), int(now + ttl_s), session)
        self._secrets[secret.value] = secret
        return secret

    def claim(self, value: str, now: float) -> ClientSecret:
        """Take the secret for a call being set up: :meth:`consume` it once the call exists, or
        :meth:`release` it if the set-up failed (so the browser may retry with it)."""
        secret = self.redeem(value, now)
        if value in self._claimed:
            raise Unauthorized("This client secret is already being used to create a call.",
                               code="client_secret_in_use")
        self._claimed.add(value)
        return secret

    def consume(self, value: str) -> None:
        self._claimed.discard(value)
        self._secrets.pop(value, None)

    def release(self, value: str) -> None:
        self._claimed.discard(value)

    def redeem(self, value: str, now: float) -> ClientSecret:
        """The secret for ``value``, or :class:`Unauthorized` saying why not."""
        if not value.startswith(PREFIX):
            raise Unauthorized("Authorization must be 'Bearer ek_…', a client secret from "
                               "POST /v1/realtime/client_secrets.", code="invalid_client_secret")
        secret = self._secrets.get(value)
        if secret is None:
            raise Unauthorized("The client secret is not valid (or was already used to create a call).",
                               code="invalid_client_secret")
        if now >= secret.expires_at:
            del self._secrets[value]
            raise Unauthorized("The client secret has expired; request a new one.", code="expired_client_secret")
        return secret

    def _purge(self, now: float) -> None:
        for value in [v for v, s in self._secrets.items() if now >= s.expires_at]:
            del self._secrets[value]
