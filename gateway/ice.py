"""STUN/TURN servers for both ends of a call.

Browsers get every configured URL (with freshly minted TURN credentials) and try them all.
aiortc, on the gateway's side, uses only the *first* STUN and the *first* TURN URL it is given,
and a dead server there delays every answer by aioice's gathering timeout. So the gateway
probes each configured server in the background (a STUN binding; a real TURN allocation) and
hands its own peer the first one, in configured order, that answered the last probe — every URL
counts: the second takes over while the first is down, and the first is back once it answers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import struct
import time
from collections.abc import Callable
from typing import Any

from aioice import stun
from aioice.turn import create_turn_endpoint
from aiortc import RTCConfiguration, RTCIceServer
from aiortc.rtcconfiguration import RTCIceTransportPolicy
from aiortc.rtcicetransport import parse_stun_turn_uri

from .config import Config
from .turn_credentials import TurnCredential, browser_ice_servers, mint

logger = logging.getLogger(__name__)
PROBE_TIMEOUT_S = 2.0


class IceServers:
    def __init__(self, config: Config, clock: Callable[[], float] = time.time) -> None:
        self._urls = [server.urls for server in config.ice_servers]
        self._secret = config.turn_secret
        self._ttl = config.turn_credential_ttl_s
        self._relay_only = config.ice_transport_policy == "relay"
        self._clock = clock
        self.health: dict[str, str | None] = {url: None for url in self._urls}  # None = fine / not probed

    def credential(self, identity: str) -> TurnCredential | None:
        return mint(self._secret, identity, self._ttl, self._clock) if self._secret else None

    def for_browser(self, identity: str) -> list[dict[str, Any]]:
        return browser_ice_servers(self._urls, self.credential(identity))

    def _first_healthy(self, schemes: tuple[str, ...]) -> str | None:
        candidates = [url for url in self._urls if url.startswith(schemes)]
        return next((url for url in candidates if self.health[url] is None), candidates[0] if candidates else None)

    def for_gateway(self) -> RTCConfiguration:
        servers = []
        stun_url = self._first_healthy(("stun:",))
        if stun_url:
            servers.append(RTCIceServer(urls=stun_url))
        turn_url = self._first_healthy(("turn:", "turns:"))
        credential = self.credential("gateway")
        if turn_url and credential:
            servers.append(RTCIceServer(urls=turn_url, username=credential.username, credential=credential.password))
        policy = RTCIceTransportPolicy.RELAY if self._relay_only else RTCIceTransportPolicy.ALL
        return RTCConfiguration(iceServers=servers, iceTransportPolicy=policy)

    async def check(self) -> None:
        """Probe every server once; log each change of health."""
        results = await asyncio.gather(*(self._probe(url) for url in self._urls))
        for url, problem in zip(self._urls, results):
            if problem != self.health[url]:
                if problem:
                    logger.warning("ICE server %s is not usable: %s", url, problem)
                else:
                    logger.info("ICE server %s answers", url)
            self.health[url] = problem

    async def keep_checking(self, interval_s: float = 30.0) -> None:
        """Owned by the app (started on start-up, cancelled on clean-up)."""
        while True:
            await self.check()
            await asyncio.sleep(interval_s)

    async def _probe(self, url: str) -> str | None:
        try:
            parsed = parse_stun_turn_uri(url)
            address = (parsed["host"], parsed["port"])
            if parsed["scheme"] == "stun":
                await asyncio.wait_for(_stun_binding(address), PROBE_TIMEOUT_S)
            else:
                credential = self.credential("probe")
                if credential is None:
                    return "no TURN_SECRET to authenticate with"
                context = ssl.create_default_context() if parsed["scheme"] == "turns" else None
                transport, _ = await asyncio.wait_for(create_turn_endpoint(
                    asyncio.DatagramProtocol, address, credential.username, credential.password, lifetime=60,
                    ssl=context, transport=parsed["transport"] or "udp"), PROBE_TIMEOUT_S)
                transport.close()
        except stun.TransactionFailed as exc:
            code = exc.response.error_code
            if code == 401:
                return "TURN refused the credentials (401): is TURN_SECRET the server's static-auth-secret?"
            return f"STUN/TURN error {code}"
        except (asyncio.TimeoutError, stun.TransactionTimeout):
            return f"no answer within {PROBE_TIMEOUT_S:.0f} s"
        except (OSError, ConnectionError, ValueError) as exc:
            return str(exc) or type(exc).__name__
        return None


async def _stun_binding(address: tuple[str, int]) -> None:
    """One STUN Binding transaction (RFC 8489): enough to know the server is alive."""
    loop = asyncio.get_running_loop()
    transaction = os.urandom(12)
    request = struct.pack("!HHI", 0x0001, 0, 0x2112A442) + transaction
    answered = loop.create_future()

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
            except asyncio.TimeoutError:
                continue
        await answered
    finally:
        transport.close()
