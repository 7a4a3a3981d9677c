"""Client secrets: unguessable, bound to a session, expiring, single use."""

from __future__ import annotations

import pytest

from gateway.core.errors import Unauthorized
from gateway.core.tokens import TokenStore

NOW = 1_000_000.0


def test_mint_and_redeem_until_expiry() -> None:
    store = TokenStore()
    secret = store.mint({"instructions": "x"}, ttl_s=60, now=NOW)
    assert secret.value.startswith("ek_") and len(secret.value) >= 40
    assert secret.expires_at == 1_000_060
    assert store.redeem(secret.value, NOW + 59).session == {"instructions": "x"}
    with pytest.raises(Unauthorized) as caught:
        store.redeem(secret.value, NOW + 61)
    assert caught.value.code == "expired_client_secret"


def test_secrets_are_unique_and_forgeries_fail() -> None:
    store = TokenStore()
    values = {store.mint({}, 60, NOW).value for _ in range(1000)}
    assert len(values) == 1000
    for forged in ("ek_" + "A" * 43, "sk-proj-123", ""):
        with pytest.raises(Unauthorized):
            store.redeem(forged, NOW)


def test_a_consumed_secret_is_gone_and_a_claimed_one_is_busy() -> None:
    store = TokenStore()
    secret = store.mint({}, 60, NOW)
    store.claim(secret.value, NOW)
    with pytest.raises(Unauthorized) as busy:
        store.claim(secret.value, NOW)
    assert busy.value.code == "client_secret_in_use"
    store.release(secret.value)
    store.claim(secret.value, NOW)  # a failed set-up gives it back
    store.consume(secret.value)
    with pytest.raises(Unauthorized) as used:
        store.redeem(secret.value, NOW)
    assert used.value.code == "invalid_client_secret"


def test_store_is_bounded_and_purges_expired() -> None:
    store = TokenStore(capacity=10)
    for _ in range(10):
        store.mint({}, 10, NOW)
    store.mint({}, 10, NOW + 11)  # full, but the expired ones make room
    assert len(store) == 1
