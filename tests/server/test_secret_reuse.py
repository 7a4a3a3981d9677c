"""CLIENT_SECRET_REUSE: single use by default (ours); until expiry on request (OpenAI's documented
behaviour: a client secret may create several sessions until it expires)."""

from __future__ import annotations

import time

import aiohttp
import pytest

from gateway.core.errors import Unauthorized
from gateway.core.tokens import TokenStore
from tests.conftest import GatewayFactory
from tests.peers import ClientPeer
from tests.server.test_signaling import expect_error, mint


async def _offer_with(url: str, secret: str) -> tuple[int, ClientPeer]:
    peer = ClientPeer(url)
    await peer.pc.setLocalDescription(await peer.pc.createOffer())
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/v1/realtime/calls", data=peer.pc.localDescription.sdp, headers={
                "Content-Type": "application/sdp", "Authorization": f"Bearer {secret}"}) as r:
            if r.status != 201:
                await expect_error(r, 401, "invalid_client_secret")
            else:
                peer.location = r.headers["Location"]
            return r.status, peer


async def test_single_use_by_default(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway()
    async with aiohttp.ClientSession() as http:
        secret = (await mint(http, gateway.url))["value"]
    first, first_peer = await _offer_with(gateway.url, secret)
    second, second_peer = await _offer_with(gateway.url, secret)
    try:
        assert (first, second) == (201, 401)
        assert len(gateway.state.calls) == 1
    finally:
        await first_peer.pc.close()
        await second_peer.pc.close()


async def test_until_expiry_creates_several_calls(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(client_secret_reuse="until_expiry")
    async with aiohttp.ClientSession() as http:
        secret = (await mint(http, gateway.url))["value"]
    peers = []
    try:
        for _ in range(3):
            status, peer = await _offer_with(gateway.url, secret)
            peers.append(peer)
            assert status == 201
        assert len(gateway.state.calls) == 3 and len({p.location for p in peers}) == 3  # three calls
    finally:
        for peer in peers:
            await peer.pc.close()


def test_reused_secrets_still_expire() -> None:
    store = TokenStore(reuse=True)
    now = time.time()
    secret = store.mint({}, ttl_s=10, now=now)
    for _ in range(3):
        store.claim(secret.value, now)
        store.consume(secret.value)
    with pytest.raises(Unauthorized) as expired:
        store.redeem(secret.value, now + 11)
    assert expired.value.code == "expired_client_secret"
