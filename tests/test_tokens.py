"""Client secrets: unguessable, bound to a session, expiring."""

from __future__ import annotations

import pytest

from gateway.errors import Unauthorized
from gateway.tokens import TokenStore


class Clock:
    now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_mint_and_redeem_until_expiry() -> None:
    clock = Clock()
    store = TokenStore(clock=clock)
    secret = store.mint({"instructions": "x"}, ttl_s=60)
    assert secret.value.startswith("ek_") and len(secret.value) >= 40
    assert secret.expires_at == 1_000_060
    assert store.redeem(secret.value).session == {"instructions": "x"}
    clock.now += 61
    with pytest.raises(Unauthorized) as caught:
        store.redeem(secret.value)
    assert caught.value.code == "expired_client_secret"


def test_secrets_are_unique_and_forgeries_fail() -> None:
    store = TokenStore()
    values = {store.mint({}, 60).value for _ in range(1000)}
    assert len(values) == 1000
    for forged in ("ek_" + "A" * 43, "sk-proj-123", ""):
        with pytest.raises(Unauthorized):
            store.redeem(forged)


def test_store_is_bounded_and_purges_expired() -> None:
    clock = Clock()
    store = TokenStore(clock=clock, capacity=10)
    for _ in range(10):
        store.mint({}, 10)
    clock.now += 11
    store.mint({}, 10)  # full, but the expired ones make room
    assert len(store) == 1
