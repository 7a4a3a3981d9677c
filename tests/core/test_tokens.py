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


KEY = b"k" * 32


def test_signed_secret_is_accepted_by_another_instance_with_the_same_key() -> None:
    minted = TokenStore(prefix="ek_gw0_w1_", signing_key=KEY).mint({"voice": "ash"}, ttl_s=60, now=NOW)
    other = TokenStore(prefix="ek_gw1_", signing_key=KEY)
    secret = other.claim(minted.value, NOW + 1)
    assert (secret.session, secret.expires_at, secret.session_id) == ({"voice": "ash"}, 1_000_060, minted.session_id)
    other.consume(minted.value)
    with pytest.raises(Unauthorized):  # single use within the instance
        other.claim(minted.value, NOW + 2)
    with pytest.raises(Unauthorized) as caught:
        TokenStore(signing_key=KEY).redeem(minted.value, NOW + 61)
    assert caught.value.code == "expired_client_secret"


def test_signed_secret_tampering_and_other_keys_fail() -> None:
    import base64
    import json
    import zlib
    value = TokenStore(prefix="ek_gw0_", signing_key=KEY).mint({"voice": "ash"}, ttl_s=60, now=NOW).value
    head, payload, signature = value.split(".")
    fields = json.loads(zlib.decompress(base64.urlsafe_b64decode(payload + "==")))
    fields["e"] += 3600  # a longer life
    longer = base64.urlsafe_b64encode(zlib.compress(json.dumps(fields).encode())).rstrip(b"=").decode()
    store = TokenStore(signing_key=KEY)
    for forged in (f"{head}.{longer}.{signature}", f"ek_gw9_{head[7:]}.{payload}.{signature}",
                   f"{head}.{payload}.{signature[:-2]}AA", f"{head}.{payload}", value + "x"):
        with pytest.raises(Unauthorized) as caught:
            store.redeem(forged, NOW)
        assert caught.value.code == "invalid_client_secret"
    with pytest.raises(Unauthorized):
        TokenStore(signing_key=b"o" * 32).redeem(value, NOW)
    assert store.redeem(value, NOW).session == {"voice": "ash"}


def test_signed_secret_claim_release_and_reuse() -> None:
    store = TokenStore(signing_key=KEY)
    value = store.mint({}, 60, NOW).value
    store.claim(value, NOW)
    with pytest.raises(Unauthorized) as caught:
        store.claim(value, NOW)
    assert caught.value.code == "client_secret_in_use"
    store.release(value)
    assert store.claim(value, NOW).id
    reusable = TokenStore(signing_key=KEY, reuse=True)
    for _ in range(3):
        reusable.claim(value, NOW)
        reusable.consume(value)
