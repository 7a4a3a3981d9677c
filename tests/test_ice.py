"""Probing STUN/TURN servers against a real coturn, and which one the gateway's own peer uses."""

from __future__ import annotations

from gateway.config import Config, IceServer
from gateway.ice import IceServers

from .turn_server import TurnServer, turn_server  # noqa: F401


def ice(urls: list[str], secret: str | None) -> IceServers:
    return IceServers(Config(openai_api_key="k", upstream="openai", turn_secret=secret,
                             ice_servers=tuple(IceServer(u) for u in urls)))


async def test_probes_tell_working_dead_and_misconfigured_servers_apart(turn_server: TurnServer) -> None:  # noqa: F811
    dead = "turn:127.0.0.1:9?transport=udp"
    servers = ice([dead, turn_server.url, f"stun:127.0.0.1:{turn_server.port}"], turn_server.secret)
    await servers.check()
    assert servers.health[turn_server.url] is None
    assert servers.health[f"stun:127.0.0.1:{turn_server.port}"] is None
    assert servers.health[dead]
    # The dead first URL is skipped: every configured URL counts, in order.
    configuration = servers.for_gateway()
    assert [s.urls for s in configuration.iceServers] == [f"stun:127.0.0.1:{turn_server.port}", turn_server.url]

    wrong = ice([turn_server.url], "not-the-secret")
    await wrong.check()
    assert "401" in wrong.health[turn_server.url]


async def test_gateway_credentials_are_minted_and_valid(turn_server: TurnServer) -> None:  # noqa: F811
    servers = ice([turn_server.url], turn_server.secret)
    turn = servers.for_gateway().iceServers[0]
    assert turn.username.endswith(":gateway") and turn.credential
    assert servers.for_browser("sess_1")[0]["username"].endswith(":sess_1")
