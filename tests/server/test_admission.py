"""Admission and limits: rate limits, minting keys, single-use secrets, draining, data-channel
limits, trickle ICE."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.conftest import GatewayFactory, RunningGateway
from tests.peers import ClientPeer
from tests.server.test_call import connected, turn
from tests.server.test_signaling import expect_error, mint, offer_sdp


async def test_per_ip_rate_limit_answers_429(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(rate_limit_per_minute=6)
    async with aiohttp.ClientSession() as http:
        statuses = []
        for _ in range(8):
            async with http.post(f"{gateway.url}/v1/realtime/client_secrets", json={}) as response:
                statuses.append(response.status)
                if response.status == 429:
                    assert int(response.headers["Retry-After"]) >= 1
                    await expect_error(response, 429, "rate_limited")
    assert statuses[:5] == [200] * 5 and 429 in statuses


async def test_minting_with_gateway_api_keys(make_gateway: GatewayFactory) -> None:
    key = "gk_" + "x" * 30
    gateway = await make_gateway(api_keys=(key,))
    url = f"{gateway.url}/v1/realtime/client_secrets"
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json={}) as response:
            await expect_error(response, 401, "invalid_api_key")
        async with http.post(url, json={}, headers={"Authorization": "Bearer gk_wrong"}) as response:
            await expect_error(response, 401, "invalid_api_key")
        async with http.post(url, json={}, headers={"Authorization": f"Bearer {key}"}) as response:
            assert response.status == 200
            assert key not in await response.text()


async def test_a_client_secret_creates_one_call_only(gateway: RunningGateway) -> None:
    peer = await connected(gateway)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{gateway.url}/v1/realtime/calls", data=await offer_sdp(), headers={
                    "Content-Type": "application/sdp", "Authorization": f"Bearer {peer.secret['value']}"}) as r:
                await expect_error(r, 401, "invalid_client_secret")
            # A refused offer does not burn the secret: the browser may fix it and retry.
            secret = (await mint(http, gateway.url))["value"]
            headers = {"Content-Type": "application/sdp", "Authorization": f"Bearer {secret}"}
            async with http.post(f"{gateway.url}/v1/realtime/calls", data="v=0 broken", headers=headers) as r:
                assert r.status == 400
            async with http.post(f"{gateway.url}/v1/realtime/calls", data=await offer_sdp(), headers=headers) as r:
                assert r.status == 201
                async with http.delete(f"{gateway.url}{r.headers['Location']}") as hangup:
                    assert hangup.status == 204
    finally:
        await peer.close()


async def test_draining_refuses_new_calls_and_tells_current_ones(gateway: RunningGateway) -> None:
    peer = await connected(gateway)
    try:
        gateway.state.draining = True
        drain = asyncio.create_task(gateway.state.calls.drain(timeout=0.5))
        notice = await peer.wait_for("error", where=lambda e: e["error"]["code"] == "gateway_shutting_down")
        assert "shutting down" in notice["error"]["message"]
        await drain
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{gateway.url}/v1/realtime/client_secrets", json={}) as response:
                await expect_error(response, 503, "shutting_down")
                assert response.headers["Retry-After"]
    finally:
        await peer.close()


async def test_data_channel_limits_keep_the_call(gateway: RunningGateway) -> None:
    peer = await connected(gateway)
    try:
        peer.channel.send('{"type": "session.update", "session": {"instructions": "' + "x" * 100_000 + '"}}')
        await peer.wait_for("error", where=lambda e: e["error"]["code"] == "message_too_large")
        for _ in range(400):
            peer.send({"type": "input_audio_buffer.clear"})
        await peer.wait_for("error", where=lambda e: e["error"]["code"] == "rate_limited")
        await asyncio.sleep(1.5)  # the bucket refills
        await turn(peer)
    finally:
        await peer.close()


async def test_trickled_candidates_are_accepted(gateway: RunningGateway) -> None:
    peer = ClientPeer(gateway.url)
    await peer.pc.setLocalDescription(await peer.pc.createOffer())
    lines = peer.pc.localDescription.sdp.split("\r\n")
    candidates = [line for line in lines if line.startswith("a=candidate:")]
    offer = "\r\n".join(line for line in lines if not line.startswith(("a=candidate:", "a=end-of-candidates")))
    try:
        async with aiohttp.ClientSession() as http:
            secret = (await mint(http, gateway.url))["value"]
            async with http.post(f"{gateway.url}/v1/realtime/calls", data=offer, headers={
                    "Content-Type": "application/sdp", "Authorization": f"Bearer {secret}"}) as r:
                assert r.status == 201
                location = r.headers["Location"]
            fragment = "a=ice-ufrag:x\r\na=ice-pwd:y\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n" + \
                "\r\n".join(candidates) + "\r\na=end-of-candidates\r\n"
            async with http.patch(f"{gateway.url}{location}", data=fragment,
                                  headers={"Content-Type": "application/trickle-ice-sdpfrag"}) as r:
                assert r.status == 204, await r.text()
            async with http.patch(f"{gateway.url}{location}", data="garbage\r\n",
                                  headers={"Content-Type": "application/trickle-ice-sdpfrag"}) as r:
                await expect_error(r, 400, "invalid_sdpfrag")
            async with http.patch(f"{gateway.url}{location}", data=fragment,
                                  headers={"Content-Type": "text/plain"}) as r:
                await expect_error(r, 415, "unsupported_content_type")
        (call,) = gateway.state.calls
        transport = call.pc.getTransceivers()[0].receiver.transport.transport
        remote = transport.getRemoteCandidates()
        assert len(remote) >= len(candidates)
    finally:
        await peer.pc.close()
