"""The HTTP interface: OpenAI-shaped success responses and every refusal as clear JSON."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import pytest
from aiortc import RTCPeerConnection
from openai.types.realtime import ClientSecretCreateResponse

from tests.conftest import GatewayFactory, RunningGateway
from tests.peers import ClientPeer


async def offer_sdp() -> str:
    pc = RTCPeerConnection()
    pc.addTransceiver("audio")
    pc.createDataChannel("oai-events")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


async def mint(http: aiohttp.ClientSession, url: str, body: Any = None) -> dict[str, Any]:
    async with http.post(f"{url}/v1/realtime/client_secrets", json=body or {}) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def expect_error(response: aiohttp.ClientResponse, status: int, code: str) -> dict[str, Any]:
    body = await response.json()
    assert response.status == status, body
    assert set(body["error"]) >= {"type", "code", "message"}
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    return body["error"]


async def test_client_secret_has_openai_shape_and_ice_servers(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(ice_servers=())
    async with aiohttp.ClientSession() as http:
        secret = await mint(http, gateway.url, {"session": {"type": "realtime", "instructions": "Seja breve."},
                                                "expires_after": {"anchor": "created_at", "seconds": 60}})
    ClientSecretCreateResponse.model_validate(secret)
    assert secret["value"].startswith("ek_") and len(secret["value"]) > 40
    assert secret["session"]["instructions"] == "Seja breve."
    assert secret["session"]["audio"]["output"]["voice"] == "alloy"
    assert secret["ice_servers"] == []
    assert 55 <= secret["expires_at"] - time.time() <= 61
    assert "sk-test-upstream-key" not in str(secret)


async def test_client_secret_refusals(gateway: RunningGateway) -> None:
    url = f"{gateway.url}/v1/realtime/client_secrets"
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data="{not json", headers={"Content-Type": "application/json"}) as r:
            await expect_error(r, 400, "invalid_json")
        async with http.post(url, data="x=1", headers={"Content-Type": "text/plain"}) as r:
            await expect_error(r, 415, "unsupported_content_type")
        async with http.post(url, json={"session": {"type": "transcription"}}) as r:
            error = await expect_error(r, 400, "invalid_value")
            assert error["param"] == "session.type"
        async with http.post(url, json={"expires_after": {"seconds": 99999}}) as r:
            await expect_error(r, 400, "invalid_value")
        async with http.post(url, data=b"{" + b" " * 70_000 + b"}", headers={"Content-Type": "application/json"}) as r:
            await expect_error(r, 413, "request_too_large")


async def test_openai_shaped_secret_requests_keep_the_gateways_locked_fields(gateway: RunningGateway) -> None:
    """OpenAI's documented body always names a model (and often the audio formats): drop-in
    backends must get a secret, with the locked fields kept as the gateway has them."""
    url = f"{gateway.url}/v1/realtime/client_secrets"
    body = {"session": {"type": "realtime", "model": "gpt-realtime-2.1", "instructions": "Seja breve.",
                        "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000}},
                                  "output": {"voice": "marin", "format": {"type": "audio/pcma"}}}}}
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json=body) as r:
            assert r.status == 200, await r.text()
            session = (await r.json())["session"]
    default = gateway.config.default_session()
    assert session["model"] == default["model"]
    assert session["audio"]["output"]["format"] == default["audio"]["output"]["format"]
    assert session["instructions"] == "Seja breve." and session["audio"]["output"]["voice"] == "marin"


async def test_call_refusals(gateway: RunningGateway) -> None:
    url = f"{gateway.url}/v1/realtime/calls"
    sdp = await offer_sdp()
    async with aiohttp.ClientSession() as http:
        secret = (await mint(http, gateway.url))["value"]
        auth = {"Authorization": f"Bearer {secret}"}
        async with http.post(url, data=sdp, headers={"Content-Type": "application/sdp"}) as r:
            await expect_error(r, 401, "missing_authorization")
        async with http.post(url, data=sdp, headers={"Content-Type": "application/sdp",
                                                     "Authorization": "Bearer ek_forged"}) as r:
            await expect_error(r, 401, "invalid_client_secret")
        async with http.post(url, data=sdp, headers={"Content-Type": "application/sdp",
                                                     "Authorization": "Bearer sk-real-key"}) as r:
            await expect_error(r, 401, "invalid_client_secret")
        async with http.post(url, data=sdp, headers={"Content-Type": "text/plain", **auth}) as r:
            await expect_error(r, 415, "unsupported_content_type")
        async with http.post(url, data="hello", headers={"Content-Type": "application/sdp", **auth}) as r:
            await expect_error(r, 400, "invalid_offer")
        broken = sdp.replace("a=fingerprint:", "a=fingerprint-broken:")
        async with http.post(url, data=broken, headers={"Content-Type": "application/sdp", **auth}) as r:
            await expect_error(r, 400, "invalid_offer")
        garbled = "\r\n".join(line if not line.startswith("m=") else "m=audio notaport UDP/TLS/RTP/SAVPF 111"
                              for line in sdp.splitlines())
        async with http.post(url, data=garbled, headers={"Content-Type": "application/sdp", **auth}) as r:
            await expect_error(r, 400, "invalid_offer")
        video_only = sdp.replace("m=audio", "m=video")
        async with http.post(url, data=video_only, headers={"Content-Type": "application/sdp", **auth}) as r:
            await expect_error(r, 400, "invalid_offer")
        async with http.post(url, data=sdp + "a=x:" + "y" * 70_000,
                             headers={"Content-Type": "application/sdp", **auth}) as r:
            await expect_error(r, 413, "request_too_large")
        async with http.delete(f"{url}/rtc_doesnotexist") as r:
            await expect_error(r, 404, "call_not_found")
        async with http.get(f"{gateway.url}/healthz") as r:
            assert r.status == 200 and (await r.json())["calls"] == 0


async def test_expired_secret_is_refused(gateway: RunningGateway) -> None:
    # A secret minted 11 s ago with the shortest lifetime (10 s): expired now.
    secret = gateway.state.tokens.mint({}, ttl_s=10, now=time.time() - 11).value
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{gateway.url}/v1/realtime/calls", data=await offer_sdp(),
                             headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {secret}"}) as r:
            await expect_error(r, 401, "expired_client_secret")


async def test_at_capacity_answers_503(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(max_calls=1)
    first = ClientPeer(gateway.url)
    await first.connect()
    try:
        second = ClientPeer(gateway.url)
        with pytest.raises(AssertionError, match="at_capacity"):
            await second.connect()
        await second.pc.close()
    finally:
        await first.close()


async def test_multipart_offer_with_session(gateway: RunningGateway) -> None:
    sdp = await offer_sdp()
    async with aiohttp.ClientSession() as http:
        secret = (await mint(http, gateway.url))["value"]
        form = aiohttp.FormData(default_to_multipart=True)
        form.add_field("sdp", sdp)
        form.add_field("session", '{"type": "realtime", "instructions": "Fale devagar."}')
        async with http.post(f"{gateway.url}/v1/realtime/calls", data=form,
                             headers={"Authorization": f"Bearer {secret}"}) as r:
            answer = await r.text()
            assert r.status == 201, answer
            location = r.headers["Location"]
        assert answer.startswith("v=0")
        audio = answer[answer.index("m=audio"):answer.index("m=application")]
        assert "a=sendrecv" in audio and "a=msid:" in audio and "opus/48000/2" in audio
        assert "PCMU" not in audio and "a=candidate:" in audio
        call = gateway.state.calls.get(location.rsplit("/", 1)[1])
        assert call.conversation.session["instructions"] == "Fale devagar."
        async with http.delete(f"{gateway.url}{location}") as r:
            assert r.status == 204


async def test_cors(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(allowed_origins=("https://app.example",))
    url = f"{gateway.url}/v1/realtime/calls"
    async with aiohttp.ClientSession() as http:
        async with http.options(url, headers={"Origin": "https://app.example",
                                              "Access-Control-Request-Method": "POST",
                                              "Access-Control-Request-Headers": "authorization,content-type,x-custom"}) as r:
            assert r.status == 204
            assert r.headers["Access-Control-Allow-Origin"] == "https://app.example"
            assert r.headers["Access-Control-Allow-Headers"] == "authorization,content-type,x-custom"
            assert "POST" in r.headers["Access-Control-Allow-Methods"]
        async with http.post(f"{gateway.url}/v1/realtime/client_secrets", json={},
                             headers={"Origin": "https://app.example"}) as r:
            assert r.status == 200
            assert r.headers["Access-Control-Allow-Origin"] == "https://app.example"
            assert "Location" in r.headers["Access-Control-Expose-Headers"]
        async with http.post(f"{gateway.url}/v1/realtime/client_secrets", json={},
                             headers={"Origin": "https://evil.example"}) as r:
            await expect_error(r, 403, "origin_not_allowed")
            assert "Access-Control-Allow-Origin" not in r.headers
