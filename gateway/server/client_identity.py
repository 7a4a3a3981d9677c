"""Who sent a request: the identity rate limits and call slots count, and the host it addressed.

The client is the socket peer, unless that peer is one of ``TRUSTED_PROXIES``: then it is the
rightmost hop of ``Forwarded`` (RFC 7239; ``X-Forwarded-For`` when there is none) that is not a
trusted proxy itself — hops left of it were written by the client and prove nothing. The host the
browser addressed (for the same-origin check) is ``Forwarded: host=`` / ``X-Forwarded-Host`` from
a trusted proxy, else ``Host``. An IPv6 client counts as its /64, since one subscriber holds a
whole /64 and could otherwise take a fresh identity per request.

Between workers, a request forwarded over a worker's private Unix socket carries what the first
worker verified in ``X-Gateway-*`` headers. Those headers are read only from that socket; every
``X-Gateway-*`` header a client sent, in any letter case, is dropped before forwarding.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

from aiohttp import web

INTERNAL_PREFIX = "x-gateway-"
FORWARDED_HEADER = "X-Gateway-Forwarded"  # set on worker-to-worker requests (Unix socket only)
IDENTITY_HEADER = "X-Gateway-Client"
ADDRESS_HEADER = "X-Gateway-Client-Address"
_MAX_HOPS = 32  # more Forwarded/X-Forwarded-For hops than any real chain of proxies
_MAX_TOKEN = 100

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Client:
    identity: str  # what limits count: an IPv4 address, an IPv6 /64, or a trusted proxy's opaque name
    address: str  # the client's address as seen (or as a trusted proxy saw it)
    host: str  # host[:port] the client addressed
    internal: bool = False  # forwarded by another worker, which already checked its origin

    @property
    def is_loopback(self) -> bool:
        ip = _ip(self.address)
        return ip is not None and ip.is_loopback


CLIENT_KEY = web.RequestKey("client", Client)


class TrustedProxies:
    def __init__(self, networks: Iterable[str]) -> None:
        self._networks = [ipaddress.ip_network(n, strict=False) for n in networks]

    def __bool__(self) -> bool:
        return bool(self._networks)

    def __contains__(self, address: object) -> bool:
        ip = _ip(address) if isinstance(address, str) else None
        return ip is not None and any(ip.version == n.version and ip in n for n in self._networks)


def client_of(request: web.Request) -> Client:
    """The client :func:`identity_middleware` found for this request."""
    return request[CLIENT_KEY]


def is_internal(request: web.Request) -> bool:
    """Only a request that came over a worker's private Unix socket may claim to be forwarded
    (a TCP socket's name is an address tuple, a Unix socket's a path string)."""
    transport = request.transport
    return FORWARDED_HEADER in request.headers and transport is not None and \
        isinstance(transport.get_extra_info("sockname"), str)


def identify(request: web.Request, proxies: TrustedProxies) -> Client:
    if is_internal(request):
        identity = request.headers.get(IDENTITY_HEADER, "unknown")
        return Client(identity, request.headers.get(ADDRESS_HEADER, identity), request.host, internal=True)
    peer = request.remote or "unknown"
    if peer not in proxies:
        return _client(peer, request.host)
    headers = request.headers
    forwarded = parse_forwarded(headers.getall("Forwarded", []))
    elements = [element for element in forwarded if "for" in element]
    hosts: list[str | None]
    if elements:
        hops = [element["for"] for element in elements]
        hosts = [element.get("host") for element in elements]
    else:
        hops = _split(headers.getall("X-Forwarded-For", []))
        named = _split(headers.getall("X-Forwarded-Host", [])) or [e["host"] for e in forwarded if "host" in e]
        if not hops:  # a proxy that names the host only: the client is the proxy
            return _client(peer, named[0] if named else request.host)
        hosts = _aligned(named, len(hops))
    chosen = 0  # every hop is a trusted proxy: the first one is as close to the client as we know
    for index in range(len(hops) - 1, -1, -1):
        if _node(hops[index]) not in proxies:
            chosen = index
            break
    return _client(_node(hops[chosen]), hosts[chosen] or request.host)


def identity_middleware(proxies: TrustedProxies) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    @web.middleware
    async def identify_client(request: web.Request, handler: Handler) -> web.StreamResponse:
        request[CLIENT_KEY] = identify(request, proxies)
        return await handler(request)

    return identify_client


def forwarded_headers(request: web.Request, drop: Iterable[str]) -> dict[str, str]:
    """The headers to forward to the worker holding a call: the client's, minus ``drop`` and
    every ``X-Gateway-*`` (any case), plus what this worker verified."""
    dropped = {name.lower() for name in drop}
    headers = {name: value for name, value in request.headers.items()
               if name.lower() not in dropped and not name.lower().startswith(INTERNAL_PREFIX)}
    client = client_of(request)
    headers.update({FORWARDED_HEADER: "1", IDENTITY_HEADER: client.identity, ADDRESS_HEADER: client.address})
    return headers


# --- parsing --------------------------------------------------------------------------------


def parse_forwarded(values: Sequence[str]) -> list[dict[str, str]]:
    """RFC 7239 elements, left to right, each as lower-cased parameter → unquoted value; a
    malformed header yields what could be read (never raises)."""
    elements: list[dict[str, str]] = []
    for value in values:
        for element in _split_outside_quotes(value, ","):
            pairs: dict[str, str] = {}
            for pair in _split_outside_quotes(element, ";"):
                name, sep, raw = pair.partition("=")
                if sep:
                    pairs[name.strip().lower()] = _unquote(raw.strip())
            if pairs:
                elements.append(pairs)
            if len(elements) >= _MAX_HOPS:
                return elements
    return elements


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return [part.strip() for part in parts if part.strip()]


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
        out: list[str] = []
        escaped = False
        for char in value:
            if char == "\\" and not escaped:
                escaped = True
                continue
            out.append(char)
            escaped = False
        value = "".join(out)
    return value


def _split(values: Sequence[str]) -> list[str]:
    hops = [part.strip() for value in values for part in value.split(",") if part.strip()]
    return hops[-_MAX_HOPS:]


def _aligned(hosts: list[str], hops: int) -> list[str | None]:
    """X-Forwarded-Host values matched to X-Forwarded-For hops: one value (a proxy that sets
    rather than appends) stands for every hop; several are matched from the right."""
    if len(hosts) == 1:
        return [hosts[0]] * hops
    padded: list[str | None] = [None] * max(0, hops - len(hosts)) + list(hosts)
    return padded[-hops:] if hops else []


def _node(value: str) -> str:
    """An RFC 7239 node (``1.2.3.4``, ``1.2.3.4:80``, ``[2001:db8::1]:80``, ``unknown``) → its address."""
    value = value.strip()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    if value.count(":") == 1:  # IPv4 with a port (bare IPv6 has several colons)
        return value.split(":", 1)[0]
    return value


def _ip(text: str) -> IPAddress | None:
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _client(address: str, host: str) -> Client:
    ip = _ip(address)
    if ip is None:  # "unknown", "_hidden": a proxy's name for a client it will not reveal
        token = address[:_MAX_TOKEN] or "unknown"
        return Client(token, token, host)
    if ip.version == 6:
        identity = str(ipaddress.ip_network(f"{ip}/64", strict=False))
    else:
        identity = str(ip)
    return Client(identity, str(ip), host)

