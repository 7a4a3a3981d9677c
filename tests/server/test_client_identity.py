"""Who the client is: the socket peer, or — only behind TRUSTED_PROXIES — the rightmost hop a
trusted proxy wrote; and the host it addressed, for the same-origin check behind a proxy."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from gateway.server.client_identity import Client, TrustedProxies, identify, parse_forwarded
from gateway.server.origin import same_origin
from tests.conftest import GatewayFactory
from tests.server.test_signaling import expect_error

PROXIES = TrustedProxies(["10.0.0.0/8", "127.0.0.1/32", "2001:db8:ffff::/48"])


class _Transport:
    def __init__(self, peer: str, sockname: Any = ("127.0.0.1", 5000)) -> None:
        self._extra = {"peername": (peer, 40000), "sockname": sockname}

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)


def who(peer: str, headers: list[tuple[str, str]] | None = None, proxies: TrustedProxies = PROXIES,
        sockname: Any = ("127.0.0.1", 5000)) -> Client:
    request = make_mocked_request("POST", "/v1/realtime/client_secrets",
                                  headers=CIMultiDict([("Host", "gw.example"), *(headers or [])]),
                                  transport=_Transport(peer, sockname))
    return identify(request, proxies)


def test_an_untrusted_peer_is_the_client_whatever_it_claims() -> None:
    client = who("203.0.113.5", [("X-Forwarded-For", "198.51.100.1"), ("Forwarded", "for=198.51.100.2"),
                                 ("X-Forwarded-Host", "evil.example"), ("X-Gateway-Client", "1.1.1.1"),
                                 ("x-gateway-forwarded", "1")])
    assert (client.identity, client.host, client.internal) == ("203.0.113.5", "gw.example", False)


def test_behind_trusted_proxies_the_rightmost_untrusted_hop_is_the_client() -> None:
    # The client claims 6.6.6.6; its real address was appended by the first proxy; then 10.1.2.3.
    client = who("127.0.0.1", [("X-Forwarded-For", "6.6.6.6, 198.51.100.7, 10.1.2.3")])
    assert client.identity == "198.51.100.7"
    assert who("127.0.0.1", [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "198.51.100.7:5555")]).identity \
        == "198.51.100.7"  # repeated headers are one list; a port is not part of the address
    assert who("127.0.0.1", [("X-Forwarded-For", "10.0.0.9, 10.1.2.3")]).identity == "10.0.0.9"  # all trusted
    assert who("127.0.0.1").identity == "127.0.0.1"  # a trusted peer naming nobody is the client itself


def test_forwarded_header_rfc7239() -> None:
    header = 'for=6.6.6.6;host=evil.example, for="[2001:db8:cafe::17]:4711";proto=https;host="app.example", ' \
             'for=10.0.0.1'
    assert parse_forwarded([header]) == [
        {"for": "6.6.6.6", "host": "evil.example"},
        {"for": "[2001:db8:cafe::17]:4711", "proto": "https", "host": "app.example"},
        {"for": "10.0.0.1"}]
    client = who("127.0.0.1", [("Forwarded", header), ("X-Forwarded-For", "9.9.9.9")])  # Forwarded wins
    assert client.address == "2001:db8:cafe::17"
    assert client.identity == "2001:db8:cafe::/64"  # one subscriber's /64 is one client
    assert client.host == "app.example"  # the host= the proxy that saw the client recorded
    assert who("127.0.0.1", [("Forwarded", 'for="_hidden"')]).identity == "_hidden"
    assert parse_forwarded(['for="a,b;c";by=x, for=', '"unterminated']) == [{"for": "a,b;c", "by": "x"}, {"for": ""}]


@pytest.mark.parametrize("headers, host", [
    ([("X-Forwarded-Host", "app.example")], "app.example"),
    ([("X-Forwarded-For", "6.6.6.6, 198.51.100.7"), ("X-Forwarded-Host", "evil.example, app.example")], "app.example"),
    ([("Forwarded", "for=198.51.100.7;host=app.example:8443")], "app.example:8443"),
    ([], "gw.example"),
])
def test_the_addressed_host_comes_from_a_trusted_proxy(headers: list[tuple[str, str]], host: str) -> None:
    assert who("10.9.9.9", headers).host == host
    assert who("203.0.113.5", headers).host == "gw.example"  # never from anyone else


def test_internal_headers_count_only_on_a_workers_unix_socket() -> None:
    headers = [("X-Gateway-Forwarded", "1"), ("X-Gateway-Client", "198.51.100.4")]
    assert who("203.0.113.5", headers).identity == "203.0.113.5"  # over TCP: ignored
    forwarded = who("", headers, sockname="/run/gw/worker-0.sock")
    assert (forwarded.identity, forwarded.internal) == ("198.51.100.4", True)


def test_same_origin_normalises_case_and_default_ports() -> None:
    assert same_origin("https://App.Example", "app.example:443")
    assert same_origin("http://127.0.0.1:5000", "127.0.0.1:5000")
    assert same_origin("http://[::1]:5000", "[::1]:5000")
    assert not same_origin("https://app.example", "app.example:8443")
    assert not same_origin("https://app.example.evil", "app.example")
    assert not same_origin("null", "app.example")


async def test_same_origin_behind_a_trusted_proxy(make_gateway: GatewayFactory) -> None:
    """The page at https://app.example is served through a proxy that forwards to the gateway
    at 127.0.0.1: same-origin by X-Forwarded-Host — only when the proxy is trusted."""
    trusting = await make_gateway(trusted_proxies=("127.0.0.1/32",))
    suspicious = await make_gateway()
    page = {"Origin": "https://app.example", "X-Forwarded-Host": "app.example", "X-Forwarded-Proto": "https"}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{trusting.url}/v1/realtime/client_secrets", json={}, headers=page) as r:
            assert r.status == 200, await r.text()
        async with http.post(f"{trusting.url}/v1/realtime/client_secrets", json={},
                             headers={**page, "X-Forwarded-Host": "evil.example"}) as r:
            await expect_error(r, 403, "origin_not_allowed")
        async with http.post(f"{suspicious.url}/v1/realtime/client_secrets", json={}, headers=page) as r:
            await expect_error(r, 403, "origin_not_allowed")


async def test_rate_limits_count_the_client_a_trusted_proxy_names(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(rate_limit_per_minute=6, trusted_proxies=("127.0.0.1/32",))
    url = f"{gateway.url}/v1/realtime/client_secrets"

    async def mint(client: str, claimed: str = "") -> int:
        chain = f"{claimed}, {client}" if claimed else client
        async with aiohttp.ClientSession() as http, http.post(url, json={}, headers={"X-Forwarded-For": chain}) as r:
            return r.status

    assert [await mint("198.51.100.1") for _ in range(6)][:5] == [200] * 5
    assert await mint("198.51.100.1") == 429
    assert await mint("198.51.100.1", claimed="192.0.2.77") == 429  # a hop it wrote itself changes nothing
    assert await mint("198.51.100.2") == 200  # another client behind the same proxy is not affected
