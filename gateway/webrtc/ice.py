"""STUN/TURN servers for both ends of a call, and what to say when ICE does not connect.

Browsers get every configured URL (with freshly minted TURN credentials) and try them all.
aiortc, on the gateway's side, is different (aiortc 1.16 / aioice 0.13): it keeps only the
*first* ``stun:`` and the *first* usable ``turn:``/``turns:`` URL of its configuration, and a
TURN server that fails costs every call aioice's 5 s gathering timeout, then fails in silence
(aioice drops the error, a relay-only peer simply has no candidate). So every configured URL
counts this way:

* each server is probed in the background (a STUN binding; a real TURN allocation with a
  minted credential) every 30 s, and the result is logged when it changes, with the cause
  (no answer, 401 = coturn refused the credentials);
* the gateway's own peer gets the first STUN URL and the first TURN URL, in configured order,
  whose last probe succeeded, UDP relays first (no head-of-line blocking for media), then TCP,
  then TLS; while one is down the next takes over, and it is back once it answers;
* after gathering, :meth:`IceServers.check_candidates` notices a TURN server that gave no
  relay candidate after all: it is marked down at once (the next call uses the next URL) and,
  if the gateway is relay-only, the call is refused with a 503 naming the server and the cause
  instead of hanging until the ICE timeout.

The same check refuses (400) an offer that carries no candidates *and* ends them
(``a=end-of-candidates``): such a call can never connect — aioice then gathers nothing at all —
and the usual cause is a relay-only browser whose TURN server refused its expired or forged
credentials, which the client should hear at once.

:func:`explain_ice_failure` turns a call that did not connect into a log line naming the
likely cause, from the candidates each side brought.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import struct
import time
from collections.abc import Callable, Iterable
from typing import Any

from aioice import stun
from aioice.turn import create_turn_endpoint
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection
from aiortc.rtcconfiguration import RTCIceTransportPolicy
from aiortc.rtcicetransport import RTCIceTransport, parse_stun_turn_uri

from ..config import Config
from ..core.errors import GatewayError
from .turn_credentials import TurnCredential, browser_ice_servers, is_turn, mint

logger = logging.getLogger(__name__)
PROBE_TIMEOUT_S = 2.0
PROBE_INTERVAL_S = 30.0
_TRANSPORT_RANK = {("turn", "udp"): 0, ("turn", "tcp"): 1, ("turns", "tcp"): 2}


class RelayUnavailable(GatewayError):
    """The gateway must relay (ICE_TRANSPORT_POLICY=relay) but got no TURN allocation."""

    status = 503
    type = "server_error"
    default_code = "relay_unavailable"


class NoCandidates(GatewayError):
    """The offer has no usable ICE candidate and says no more will come."""

    default_code = "no_ice_candidates"


class IceServers:
    """The configured STUN/TURN URLs, their health, and the credentials minted for them."""

    def __init__(self, config: Config, clock: Callable[[], float] = time.time) -> None:
        self._urls = [server.urls for server in config.ice_servers]
        self._secret = config.turn_secret
        self._ttl = config.turn_credential_ttl_s
        self._relay_only = config.ice_transport_policy == "relay"
        self._clock = clock
        self.health: dict[str, str | None] = {url: None for url in self._urls}  # None = fine / not probed
        self._recheck = asyncio.Event()

    def credential(self, identity: str, start_by: float | None = None) -> TurnCredential | None:
        if not self._secret:
            return None
        return mint(self._secret, identity, self._ttl, self._clock, start_by=start_by)

    def for_browser(self, identity: str, token_expires_at: float | None = None) -> list[dict[str, Any]]:
        """``ice_servers`` for a client secret: valid for a call started any time before it expires."""
        return browser_ice_servers(self._urls, self.credential(identity, start_by=token_expires_at))

    def gateway_urls(self) -> tuple[str | None, str | None]:
        """(STUN URL, TURN URL) the gateway's own peer uses now."""
        stun_urls = [url for url in self._urls if url.startswith("stun:")]
        turn_urls = sorted((url for url in self._urls if is_turn(url)), key=_transport_rank)  # stable
        return _first_healthy(stun_urls, self.health), _first_healthy(turn_urls, self.health)

    def for_gateway(self, identity: str = "gateway") -> RTCConfiguration:
        """The configuration of the gateway's own peer for one call (``identity``: its call id)."""
        stun_url, turn_url = self.gateway_urls()
        servers = []
        if stun_url and not self._relay_only:  # aioice ignores STUN with the relay policy anyway
            servers.append(RTCIceServer(urls=stun_url))
        credential = self.credential(identity)
        if turn_url and credential:
            servers.append(RTCIceServer(urls=turn_url, username=credential.username, credential=credential.password))
        policy = RTCIceTransportPolicy.RELAY if self._relay_only else RTCIceTransportPolicy.ALL
        return RTCConfiguration(iceServers=servers, iceTransportPolicy=policy)

    async def check_candidates(self, pc: RTCPeerConnection, configuration: RTCConfiguration) -> None:
        """After ``setLocalDescription`` of the answer: can this call connect at all?

        Raises :class:`NoCandidates` when the browser brought no usable candidate and ended
        them, and :class:`RelayUnavailable` when the gateway is relay-only and the TURN server
        in ``configuration`` gave no relay. Either way the call could never connect, so it is
        better refused now, with the cause, than after the ICE timeout.
        """
        if _remote_candidates_ended(pc) and not remote_candidate_types(pc) and not local_candidate_types(pc):
            # aioice dropped every component: nothing was gathered, no TURN server was even asked.
            raise NoCandidates(self._no_candidates_message(pc))
        turn_url = next((url for server in configuration.iceServers or []
                         for url in _as_list(server.urls) if is_turn(url)), None)
        if turn_url is None or local_candidate_types(pc).get("relay"):
            return
        if self._relay_only:
            problem = await self.probe(turn_url) or "it gave no relay candidate in time, but answers a probe now"
        else:  # the call can go on without a relay: no waiting, the prober finds the cause
            problem = "it gave no relay candidate at gathering"
            self._recheck.set()
        self._set_health(turn_url, problem)
        if self._relay_only:
            raise RelayUnavailable(f"The gateway could not get a TURN relay from {turn_url}: {problem}.")

    def _no_candidates_message(self, pc: RTCPeerConnection) -> str:
        offered = pc.remoteDescription.sdp.count("a=candidate:") if pc.remoteDescription else 0
        if offered:  # only mDNS host names: ignored by the relay policy, or not resolvable here
            why = ("which a relay-only gateway cannot use" if self._relay_only else
                   "which did not resolve (the browser is not on the gateway's network)")
            return (f"The offer's only ICE candidates are mDNS host names, {why}, and it ends them "
                    "(a=end-of-candidates): the browser got no relay or server-reflexive candidate, so the "
                    "call could never connect.")
        hint = (" A relay-only browser has none when its TURN server refused its credentials (expired or "
                "forged: mint a new client secret) or did not answer."
                if any(is_turn(url) for url in self._urls) else "")
        return ("The offer has no ICE candidate and ends them (a=end-of-candidates), so the call could "
                f"never connect.{hint}")

    async def check(self) -> None:
        """Probe every server once; log each change of health."""
        results = await asyncio.gather(*(self.probe(url) for url in self._urls))
        for url, problem in zip(self._urls, results, strict=False):
            self._set_health(url, problem)

    async def keep_checking(self, interval_s: float = PROBE_INTERVAL_S) -> None:
        """Probe forever, sooner when a call found a server failing. Owned by the app."""
        while True:
            self._recheck.clear()
            await self.check()
            try:
                await asyncio.wait_for(self._recheck.wait(), interval_s)
            except TimeoutError:
                pass

    def _set_health(self, url: str, problem: str | None) -> None:
        if problem != self.health[url]:
            if problem:
                logger.warning("ICE server %s is not usable: %s", url, problem)
            else:
                logger.info("ICE server %s answers", url)
        self.health[url] = problem

    async def probe(self, url: str) -> str | None:
        """What is wrong with ``url`` now, or None if it served a binding/allocation."""
        try:
            parsed = parse_stun_turn_uri(url)
            address = (parsed["host"], parsed["port"])
            if parsed["scheme"] == "stun":
                await asyncio.wait_for(_stun_binding(address), PROBE_TIMEOUT_S)
                return None
            credential = self.credential("probe")
            if credential is None:
                return "no TURN_SECRET to authenticate with"
            await asyncio.wait_for(_turn_allocation(address, parsed["scheme"] == "turns", parsed["transport"],
                                                    credential), PROBE_TIMEOUT_S)
        except stun.TransactionFailed as exc:
            return _turn_error(exc.response.error_code, str(exc))
        except (TimeoutError, stun.TransactionTimeout):
            return f"no answer within {PROBE_TIMEOUT_S:.0f} s"
        except ssl.SSLError as exc:
            return f"TLS failed: {exc.reason or exc}"
        except (OSError, ConnectionError, ValueError) as exc:
            return str(exc) or type(exc).__name__
        return None


def _turn_error(code: int | None, text: str) -> str:
    if code == 401:
        return ("TURN refused the credentials (401): TURN_SECRET is not the server's static-auth-secret, "
                "or the clocks of gateway and TURN server differ by more than TURN_CREDENTIAL_TTL")
    if code == 403:
        return f"TURN forbids it (403): {text}"
    if code == 486:
        return "TURN allocation quota reached (486): raise user-quota/total-quota in turnserver.conf"
    if code == 508:
        return "TURN has no relay port left (508): widen min-port/max-port in turnserver.conf"
    return f"TURN error {code}: {text}"


def _transport_rank(url: str) -> int:
    parsed = parse_stun_turn_uri(url)
    return _TRANSPORT_RANK.get((parsed["scheme"], parsed["transport"]), 3)


def _first_healthy(urls: list[str], health: dict[str, str | None]) -> str | None:
    """The first URL whose last probe passed; if none did, the first (it may be back)."""
    return next((url for url in urls if health[url] is None), urls[0] if urls else None)


def _as_list(urls: str | list[str]) -> list[str]:
    return [urls] if isinstance(urls, str) else list(urls)


# --- what a peer connection gathered and received ---------------------------------------------


def _ice_transports(pc: RTCPeerConnection) -> list[RTCIceTransport]:
    transports: list[RTCIceTransport] = []
    dtls = [t.receiver.transport for t in pc.getTransceivers()] + ([pc.sctp.transport] if pc.sctp else [])
    for transport in dtls:
        if transport is not None and transport.transport not in transports:
            transports.append(transport.transport)
    return transports


def _count(types: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for kind in types:
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def local_candidate_types(pc: RTCPeerConnection) -> dict[str, int]:
    """Candidates the gateway gathered, by type (host, srflx, relay)."""
    return _count(c.type for t in _ice_transports(pc) for c in t.iceGatherer.getLocalCandidates())


def remote_candidate_types(pc: RTCPeerConnection) -> dict[str, int]:
    """Candidates the browser sent (in its offer or trickled), by type."""
    return _count(c.type for t in _ice_transports(pc) for c in t.getRemoteCandidates())


def _remote_candidates_ended(pc: RTCPeerConnection) -> bool:
    description = pc.remoteDescription
    return description is not None and "a=end-of-candidates" in description.sdp


def selected_route(pc: RTCPeerConnection) -> str | None:
    """``"<local type>/<remote type>"`` of the nominated pair, e.g. ``relay/host``.

    aioice has no public accessor for the nominated pair; this reads its private map and
    returns None rather than failing if that ever changes.
    """
    for transport in _ice_transports(pc):
        nominated = getattr(transport._connection, "_nominated", None) or {}
        for pair in nominated.values():
            return f"{pair.local_candidate.type}/{pair.remote_candidate.type}"
    return None


def explain_ice_failure(pc: RTCPeerConnection, config: Config) -> str:
    """The likely reason a call's ICE did not connect, for the log line that ends it."""
    local, remote = local_candidate_types(pc), remote_candidate_types(pc)
    turn_configured = any(server.is_turn for server in config.ice_servers)
    seen = (f"gateway candidates {_fmt(local)}; browser candidates {_fmt(remote)}")
    if config.ice_transport_policy == "relay" and not local.get("relay"):
        return f"the gateway has no relay candidate: its TURN server failed ({seen})"
    if not remote and turn_configured:
        return (f"the browser sent no candidates at all (none in its offer, none trickled): a relay-only "
                f"browser whose TURN allocation failed has none (expired or forged credentials? TURN "
                f"unreachable from its network?) ({seen})")
    if not remote:
        return f"the browser sent no candidates at all (none in its offer, none trickled) ({seen})"
    if turn_configured and not remote.get("relay"):
        return (f"the browser offered no relay candidate although it was given TURN URLs: its TURN "
                f"allocation failed (expired or forged credentials? TURN unreachable from its network?) "
                f"and no direct path works through its firewall/NAT ({seen})")
    if not turn_configured:
        return (f"no direct path between browser and gateway and no TURN server configured: "
                f"set ICE_SERVERS with a turn: URL and TURN_SECRET ({seen})")
    return (f"relay candidates were there but no pair answered: the TURN server may deny the peer "
            f"addresses (denied-peer-ip), or its relay port range is firewalled ({seen})")


def _fmt(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items())) or "none"


# --- probes -------------------------------------------------------------------------------------


async def _turn_allocation(address: tuple[str, int], tls: bool, transport: str, credential: TurnCredential) -> None:
    """Allocate a relay (proving address, transport, TLS and credentials), then free it."""
    loop = asyncio.get_running_loop()
    freed: asyncio.Future[None] = loop.create_future()

    class Probe(asyncio.DatagramProtocol):
        def connection_lost(self, exc: Exception | None) -> None:
            if not freed.done():
                freed.set_result(None)

    turn_transport, _ = await create_turn_endpoint(
        Probe, address, credential.username, credential.password, lifetime=60,
        ssl=ssl.create_default_context() if tls else None, transport=transport)
    turn_transport.close()  # deletes the allocation; connection_lost follows
    try:
        await asyncio.wait_for(freed, 1.0)
    except TimeoutError:
        pass  # the allocation expires on its own after its 60 s lifetime


async def _stun_binding(address: tuple[str, int]) -> None:
    """One STUN Binding transaction (RFC 8489): enough to know the server is alive."""
    loop = asyncio.get_running_loop()
    transaction = os.urandom(12)
    request = struct.pack("!HHI", 0x0001, 0, 0x2112A442) + transaction
    answered: asyncio.Future[None] = loop.create_future()

    class Probe(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            if data[8:20] == transaction and not answered.done():
                answered.set_result(None)

    transport, _ = await loop.create_datagram_endpoint(Probe, remote_addr=address)
    try:
        for _ in range(3):
            transport.sendto(request)
            try:
                await asyncio.wait_for(asyncio.shield(answered), 0.5)
                return
            except TimeoutError:
                continue
        await answered
    finally:
        transport.close()
