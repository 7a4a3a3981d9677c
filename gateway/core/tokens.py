"""Short-lived client secrets (``ek_…``): what a browser holds instead of the real API key.

A secret is an unguessable value bound to one session configuration and an expiry. By default
the browser presents it once to create its call (single use: a leaked secret cannot start a
second call); with ``reuse`` it creates calls until it expires, as OpenAI documents for its own
client secrets (``CLIENT_SECRET_REUSE=until_expiry``).

Two kinds, one interface:

- without a ``signing_key`` a secret is a random value kept in this store's memory (bounded:
  expired secrets are purged as new ones are minted), so only the process that minted it
  accepts it;
- with one (``GATEWAY_SECRET``, the same on every instance) the secret *carries* its id, expiry,
  session id and session, signed with HMAC-SHA256: ``ek_<tag><id>.<payload>.<signature>``. Any
  instance accepts it without asking the one that minted it; changing any byte (the tag, the
  expiry, the session) breaks the signature (401). Only the ids of secrets being used or spent
  are kept here, until they expire; single use across instances is the caller's (a shared
  store: see ``gateway/server/cluster.py``), on the ``id`` this store reports.

Sans-I/O: the caller passes ``now`` (unix seconds, since expiries are wall-clock times).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import zlib
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
    id: str = ""  # what single use is tracked by: the value itself when unsigned


def _invalid() -> Unauthorized:
    return Unauthorized("The client secret is not valid (or was already used to create a call).",
                        code="invalid_client_secret")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenStore:
    def __init__(self, *, capacity: int = 100_000, prefix: str = PREFIX, reuse: bool = False,
                 signing_key: bytes | None = None) -> None:
        """``prefix``: ``ek_`` (or ``ek_w2_gw0_`` in worker 2 of instance gw0, so a front or a
        worker can tell where it was minted); ``reuse``: a secret creates calls until it expires
        instead of once; ``signing_key``: self-contained signed secrets (see the module)."""
        self._prefix = prefix
        self._capacity = capacity
        self._reuse = reuse
        self._key = signing_key
        self._secrets: dict[str, ClientSecret] = {}  # unsigned secrets, by value
        self._spent: dict[str, int] = {}  # signed secrets' ids used up → their expiry
        self._claimed: set[str] = set()  # ids of secrets whose call is being set up right now

    @property
    def signed(self) -> bool:
        return self._key is not None

    def __len__(self) -> int:
        return len(self._secrets)

    def mint(self, session: Mapping[str, Any], ttl_s: int, now: float) -> ClientSecret:
        expires_at = int(now + ttl_s)
        if self._key is not None:
            ident = secrets.token_hex(16)
            session_id = new_id("sess")
            payload = zlib.compress(json.dumps({"e": expires_at, "s": session_id, "c": session},
                                               separators=(",", ":")).encode())
            head = f"{self._prefix}{ident}.{_b64(payload)}"
            return ClientSecret(f"{head}.{self._sign(head)}", session_id, expires_at, session, ident)
        if len(self._secrets) >= self._capacity:
            self._purge(now)
            if len(self._secrets) >= self._capacity:
                raise RateLimited("Too many outstanding client secrets; try again shortly.")
        value = self._prefix + secrets.token_urlsafe(32)
        secret = ClientSecret(value, new_id("sess"), expires_at, session, value)
        self._secrets[value] = secret
        return secret

    def claim(self, value: str, now: float) -> ClientSecret:
        """Take the secret for a call being set up: :meth:`consume` it once the call exists, or
        :meth:`release` it if the set-up failed (so the browser may retry with it)."""
        secret = self.redeem(value, now)
        if self._reuse:
            return secret
        if len(self._spent) >= self._capacity:
            self._purge(now)
            if len(self._spent) >= self._capacity:
                raise RateLimited("Too many client secrets used recently; try again shortly.")
        if secret.id in self._claimed:
            raise Unauthorized("This client secret is already being used to create a call.",
                               code="client_secret_in_use")
        self._claimed.add(secret.id)
        return secret

    def consume(self, value: str) -> None:
        """A call was created with the secret: single use spends it, ``reuse`` keeps it."""
        secret = self._peek(value)
        if secret is None:
            return
        self._claimed.discard(secret.id)
        if self._reuse:
            return
        if self._key is None:
            self._secrets.pop(value, None)
            return
        self._spent[secret.id] = secret.expires_at

    def release(self, value: str) -> None:
        secret = self._peek(value)
        if secret is not None:
            self._claimed.discard(secret.id)

    def redeem(self, value: str, now: float) -> ClientSecret:
        """The secret for ``value``, or :class:`Unauthorized` saying why not."""
        if not value.startswith(PREFIX):
            raise Unauthorized("Authorization must be 'Bearer ek_…', a client secret from "
                               "POST /v1/realtime/client_secrets.", code="invalid_client_secret")
        secret = self._peek(value)
        if secret is None or secret.id in self._spent:
            raise _invalid()
        if now >= secret.expires_at:
            self._secrets.pop(value, None)
            raise Unauthorized("The client secret has expired; request a new one.", code="expired_client_secret")
        return secret

    def _peek(self, value: str) -> ClientSecret | None:
        """The secret ``value`` stands for (verified when signed), expired or not."""
        if self._key is None:
            return self._secrets.get(value)
        head, dot, signature = value.rpartition(".")
        if not dot or not hmac.compare_digest(signature.encode(), self._sign(head).encode()):
            return None
        tagged, _, payload = head.partition(".")
        ident = tagged.rpartition("_")[2]
        try:
            fields = json.loads(zlib.decompress(_unb64(payload)))
            return ClientSecret(value, str(fields["s"]), int(fields["e"]), fields["c"], ident)
        except (ValueError, KeyError, TypeError, zlib.error):  # signed by us, so only if the format changed
            return None

    def _sign(self, head: str) -> str:
        assert self._key is not None
        return _b64(hmac.new(self._key, head.encode(), hashlib.sha256).digest())

    def _purge(self, now: float) -> None:
        for value in [v for v, s in self._secrets.items() if now >= s.expires_at]:
            del self._secrets[value]
        for ident in [i for i, expires_at in self._spent.items() if now >= expires_at]:
            del self._spent[ident]
