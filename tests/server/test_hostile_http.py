"""Hostile HTTP: every malformed offer, fragment and body is a 400 with a JSON error (never a 500
and a traceback), trickle ICE is bounded per connection and rate-limited, and the call that
was running meanwhile carries on."""

from __future__ import annotations

import aiohttp
import pytest

from tests.conftest import GatewayFactory, RunningGateway
from tests.peers import ClientPeer
from tests.server.page_client import GatewayProcess, PageClient
from tests.server.test_call import connected, turn
from tests.server.test_signaling import mint, offer_sdp

BAD_CANDIDATES = [
    "a=candidate:1 2 3",
    "a=candidate:1 1 udp 2130706431 127.0.0.1 notaport typ host",
    "a=candidate:1 x udp 2130706431 127.0.0.1 9 typ host",
    "a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ bogus",
    "a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ srflx raddr 1.2.3.4 rport zz",
    "a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host generation",
    "a=candidate:1 1 sctp 2130706431 127.0.0.1 9 typ host",
    "a=candidate:1 1 udp 99999999999 127.0.0.1 9 typ host",
]


def fragment(*candidates: str) -> str:
    return "a=ice-ufrag:x\r\na=ice-pwd:y\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n" + \
        "".join(f"{line}\r\n" for line in candidates)


def host_candidate(index: int) -> str:
    return f"a=candidate:{index} 1 udp 2130706431 192.0.2.{index % 250 + 1} {10000 + index} typ host"


async def json_error(response: aiohttp.ClientResponse) -> dict:
    assert response.content_type == "application/json", await response.text()
    error = (await response.json())["error"]
    assert error["message"] and error["code"] and error["type"]
    return error


async def test_malformed_candidates_are_400s_and_the_call_goes_on(gateway: RunningGateway) -> None:
    peer = await connected(gateway)
    try:
        results = {}
        async with aiohttp.ClientSession() as http:
            for line in BAD_CANDIDATES:
                async with http.patch(f"{gateway.url}{peer.location}", data=fragment(line),
                                      headers={"Content-Type": "application/trickle-ice-sdpfrag"}) as r:
                    results[line] = (r.status, (await json_error(r))["code"])
            async with http.patch(f"{gateway.url}{peer.location}", data=fragment(host_candidate(1)),
                                  headers={"Content-Type": "application/trickle-ice-sdpfrag"}) as r:
                assert r.status == 204, await r.text()  # a well-formed one is still taken
        assert results == {line: (400, "invalid_sdpfrag") for line in BAD_CANDIDATES}
        await turn(peer)  # and the call goes on
    finally:
        await peer.close()


async def test_candidates_per_connection_are_capped(gateway: RunningGateway) -> None:
    peer = await connected(gateway)
    offered = peer.pc.localDescription.sdp.count("a=candidate:")
    try:
        statuses = []
        async with aiohttp.ClientSession() as http:
            for batch in range(0, 60, 10):
                lines = [host_candidate(i) for i in range(batch, batch + 10)]
                async with http.patch(f"{gateway.url}{peer.location}", data=fragment(*lines),
                                      headers={"Content-Type": "application/trickle-ice-sdpfrag"}) as r:
                    statuses.append(r.status if r.status == 204 else (r.status, (await json_error(r))["code"]))
        accepted = (50 - offered) // 10  # whole batches that fit beside the offer's candidates
        assert statuses[:accepted] == [204] * accepted
        assert statuses[accepted] == (400, "too_many_candidates"), statuses
        (call,) = gateway.state.calls
        transport = call.pc.getTransceivers()[0].receiver.transport.transport
        assert len(transport.getRemoteCandidates()) <= 50
    finally:
        await peer.close()


async def test_trickle_is_rate_limited(make_gateway: GatewayFactory) -> None:
    """PATCH may come ten times as often as call creation (RATE_LIMIT=6: a burst of 20)."""
    gateway = await make_gateway(rate_limit_per_minute=6)
    peer = await connected(gateway)
    try:
        statuses = []
        async with aiohttp.ClientSession() as http:
            for _ in range(30):
                async with http.patch(f"{gateway.url}{peer.location}", data=fragment(),
                                      headers={"Content-Type": "application/trickle-ice-sdpfrag"}) as r:
                    statuses.append(r.status)
                    if r.status == 429:
                        assert (await json_error(r))["code"] == "rate_limited" and r.headers["Retry-After"]
        assert statuses[:20] == [204] * 20 and statuses[20] == 429, statuses
        assert statuses.count(429) >= 8, statuses  # (a token refills each second)
    finally:
        await peer.close()


def _offer_mutations(sdp: str) -> dict[str, str]:
    candidate = next(line for line in sdp.split("\r\n") if line.startswith("a=candidate:"))
    fingerprint = next(line for line in sdp.split("\r\n") if line.startswith("a=fingerprint:sha-256"))
    mutations = {f"offer with {bad}": sdp.replace(candidate, bad) for bad in BAD_CANDIDATES}
    mutations.update({
        "fingerprint not hex": sdp.replace(fingerprint, "a=fingerprint:sha-256 ZZ:" + fingerprint[26:]),
        "fingerprint without value": sdp.replace(fingerprint, "a=fingerprint:sha-256"),
        "51 candidates": sdp.replace(candidate, "\r\n".join(host_candidate(i) for i in range(51))),
        "rtpmap garbage": sdp.replace("a=rtpmap:", "a=rtpmap:x", 1),
        "sctp-port garbage": sdp.replace("a=sctp-port:", "a=sctp-port:x"),
        "m-line format garbage": sdp.replace("UDP/TLS/RTP/SAVPF 96", "UDP/TLS/RTP/SAVPF x", 1),
        "no ice-pwd": "\r\n".join(line for line in sdp.split("\r\n") if not line.startswith("a=ice-pwd")),
    })
    return mutations


async def test_malformed_offers_are_400s(gateway: RunningGateway) -> None:
    sdp = await offer_sdp()
    results = {}
    async with aiohttp.ClientSession() as http:
        for name, offer in _offer_mutations(sdp).items():
            secret = (await mint(http, gateway.url))["value"]
            async with http.post(f"{gateway.url}/v1/realtime/calls", data=offer, headers={
                    "Content-Type": "application/sdp", "Authorization": f"Bearer {secret}"}) as r:
                results[name] = (r.status, (await json_error(r))["code"] if r.status >= 400 else None)
    assert results == {name: (400, "invalid_offer") for name in results}
    assert len(gateway.state.calls) == 0


def _nested(depth: int, leaf: str = "1") -> str:
    return '{"a":' * depth + leaf + "}" * depth


@pytest.mark.parametrize("body", [
    "[" * 60_000,  # unterminated, deeper than the interpreter's recursion limit
    "[" * 20_000 + "]" * 20_000,
    '{"session": ' + _nested(10_000) + "}",
    '{"session": {"type": "realtime", "tools": [' + _nested(70) + "]}}",  # fits json.loads, not our limit (64)
])
async def test_deeply_nested_json_is_a_400(gateway: RunningGateway, body: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{gateway.url}/v1/realtime/client_secrets", data=body[:60_000],
                             headers={"Content-Type": "application/json"}) as r:
            assert r.status == 400, await r.text()
            assert (await json_error(r))["code"] == "invalid_json"


async def test_malformed_multipart_offers_are_400s(gateway: RunningGateway) -> None:
    sdp = await offer_sdp()
    results = {}
    async with aiohttp.ClientSession() as http:
        secret = (await mint(http, gateway.url))["value"]
        auth = {"Authorization": f"Bearer {secret}"}
        for name, session in [("session nested 20,000 deep", "[" * 20_000 + "]" * 20_000),
                              ("session nested 70 deep", _nested(70)), ("session not JSON", "{nope")]:
            form = aiohttp.FormData(default_to_multipart=True)
            form.add_field("sdp", sdp)
            form.add_field("session", session)
            async with http.post(f"{gateway.url}/v1/realtime/calls", data=form, headers=auth) as r:
                results[name] = (r.status, (await json_error(r))["code"] if r.status >= 400 else None)
        for name, content_type, body in [
                ("no boundary", "multipart/form-data", b"--x\r\n"),
                ("truncated part", "multipart/form-data; boundary=x",
                 b'--x\r\nContent-Disposition: form-data; name="sdp"\r\n\r\nv=0'),
                ("unknown charset", "multipart/form-data; boundary=x",
                 b'--x\r\nContent-Disposition: form-data; name="sdp"\r\nContent-Type: text/plain; charset=nope'
                 b"\r\n\r\nv=0\r\n--x--\r\n")]:
            async with http.post(f"{gateway.url}/v1/realtime/calls", data=body,
                                 headers={**auth, "Content-Type": content_type}) as r:
                results[name] = (r.status, (await json_error(r))["code"] if r.status >= 400 else None)
    assert {name: status for name, (status, _) in results.items()} == {name: 400 for name in results}, results
    assert len(gateway.state.calls) == 0


async def test_hostile_requests_through_either_worker(two_worker_gateway: GatewayProcess) -> None:
    """The same refusals when the request is forwarded to the worker holding the call."""
    gateway = two_worker_gateway
    page = PageClient(gateway.url)
    peer = ClientPeer(gateway.url)
    try:
        _, answer, _ = await page.start_call(peer)
        assert answer.status == 201, answer.text
        assert peer.location is not None
        expected, answers = [], []
        for _ in range(4):  # fresh connections: some land on the other worker and are forwarded
            for line in BAD_CANDIDATES[:3]:
                expected.append((400, "invalid_sdpfrag"))
                answers.append(await page.request("PATCH", peer.location, data=fragment(line),
                                                  headers={"Content-Type": "application/trickle-ice-sdpfrag"}))
            expected.append((400, "invalid_json"))
            answers.append(await page.request("POST", "/v1/realtime/client_secrets", data="[" * 30_000,
                                              headers={"Content-Type": "application/json"}))
        assert [(a.status, a.code) for a in answers] == expected, [a.text[:120] for a in answers]
        await peer.channel_open()
        assert (await page.hang_up(peer.location)).status == 204
    finally:
        await peer.close()
