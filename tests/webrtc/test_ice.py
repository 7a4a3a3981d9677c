"""STUN/TURN for the gateway's own peer, against a real coturn with two real aiortc peers.

The "browser" and the "gateway" here are both plain aiortc peers built from
:class:`gateway.webrtc.ice.IceServers`, both relay-only, so every packet must cross coturn.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from gateway.config import Config, IceServer
from gateway.webrtc.ice import (
    IceServers,
    NoCandidates,
    RelayUnavailable,
    explain_ice_failure,
    local_candidate_types,
    selected_route,
)
from tests.audio_tools import active_segments, pitch, voiced
from tests.peers import MicTrack, TrackListener
from tests.turn_server import TurnServer, turn_server  # noqa: F401

DEAD_UDP = "turn:127.0.0.1:9?transport=udp"  # discard port: nothing answers


def config_for(urls: list[str], secret: str | None, policy: str = "relay") -> Config:
    return Config(openai_api_key="k", upstream="openai", turn_secret=secret, ice_transport_policy=policy,
                  ice_servers=tuple(IceServer(u) for u in urls))


def ice_servers(urls: list[str], secret: str | None, policy: str = "relay",
                clock: Callable[[], float] = time.time) -> IceServers:
    return IceServers(config_for(urls, secret, policy), clock)


class Talker:
    """A peer that says a tone on request and keeps what it hears (48 kHz mono)."""

    def __init__(self, configuration: RTCConfiguration) -> None:
        self.configuration = configuration
        self.pc = RTCPeerConnection(configuration)
        self.mic = MicTrack()
        self.pc.addTrack(self.mic)
        self.ears = TrackListener()  # its task is cancelled by close()
        self.pc.on("track", self.ears.listen)

    def heard_pitch(self) -> float:
        pcm = self.ears.between(0.0)
        start, end = max(active_segments(pcm, 48000), key=lambda s: s[1] - s[0])
        assert end - start > 0.5, f"only {end - start:.2f} s of audio arrived"
        return pitch(pcm[int(start * 48000):int(end * 48000)], 48000)

    async def close(self) -> None:
        await self.pc.close()
        await self.ears.stop()


async def negotiate(browser: Talker, gateway: Talker, ice: IceServers) -> None:
    """Offer/answer without trickle, as the gateway's signaling does, with its gathering check."""
    await browser.pc.setLocalDescription(await browser.pc.createOffer())
    await gateway.pc.setRemoteDescription(browser.pc.localDescription)
    await gateway.pc.setLocalDescription(await gateway.pc.createAnswer())
    await ice.check_candidates(gateway.pc, gateway.configuration)
    await browser.pc.setRemoteDescription(gateway.pc.localDescription)


async def connected(*peers: Talker, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while any(p.pc.connectionState != "connected" for p in peers):
        states = [p.pc.connectionState for p in peers]
        assert time.monotonic() < deadline and "failed" not in states, f"ICE did not connect: {states}"
        await asyncio.sleep(0.05)


async def until(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_relay_only_peers_carry_audio_both_ways_through_coturn(turn_server: TurnServer) -> None:  # noqa: F811
    ice = ice_servers([turn_server.url], turn_server.secret)
    browser = Talker(ice.for_gateway("browser"))
    gateway = Talker(ice.for_gateway("call_1"))
    try:
        await negotiate(browser, gateway, ice)
        assert local_candidate_types(gateway.pc) == {"relay": 1}  # relay-only: no host candidate leaks
        assert "typ host" not in browser.pc.localDescription.sdp
        await connected(browser, gateway)
        assert selected_route(browser.pc) == selected_route(gateway.pc) == "relay/relay"

        browser.mic.say(voiced(1.0, 180.0, 48000, seed=1))
        gateway.mic.say(voiced(1.0, 240.0, 48000, seed=2))
        await asyncio.sleep(1.6)
        assert gateway.heard_pitch() == pytest.approx(180.0, rel=0.05)
        assert browser.heard_pitch() == pytest.approx(240.0, rel=0.05)
    finally:
        await browser.close()
        await gateway.close()
    log = turn_server.log_text()
    assert log.count("ALLOCATE processed, success") >= 2
    assert "CHANNEL_BIND processed, success" in log or "CREATE_PERMISSION processed, success" in log
    assert ":call_1" in log  # the minted username names the call in coturn's log
    # coturn's accounting when the allocations go: a second of 50 packets/s Opus crossed each way.
    await until(lambda: {user.partition(":")[2] for user in turn_server.usage()} == {"browser", "call_1"})
    for user, usage in turn_server.usage().items():
        assert usage["rp"] > 50 and usage["sp"] > 50, (user, usage)


@pytest.mark.parametrize("how", ["forged", "expired"])
async def test_refused_credentials_fail_fast_with_the_cause(turn_server: TurnServer, how: str) -> None:  # noqa: F811
    if how == "forged":
        ice = ice_servers([turn_server.url], "not-the-secret")
    else:  # minted with a clock two hours behind: expired an hour ago
        ice = ice_servers([turn_server.url], turn_server.secret, clock=lambda: time.time() - 7200)
    browser = Talker(RTCConfiguration())
    gateway = Talker(ice.for_gateway())
    started = time.monotonic()
    try:
        with pytest.raises(RelayUnavailable) as refused:
            await negotiate(browser, gateway, ice)
        assert time.monotonic() - started < 4
        assert refused.value.status == 503
        assert f"TURN relay from {turn_server.url}" in refused.value.message
        assert "401" in refused.value.message and "TURN_SECRET" in refused.value.message
        assert "401" in ice.health[turn_server.url]  # the next call tries another URL first
        reason = explain_ice_failure(gateway.pc, config_for([turn_server.url], "x"))
        assert "the gateway has no relay candidate" in reason
    finally:
        await browser.close()
        await gateway.close()
    assert turn_server.refused("gateway")


async def test_a_dead_first_turn_url_hands_over_to_the_next(turn_server: TurnServer) -> None:  # noqa: F811
    ice = ice_servers([DEAD_UDP, turn_server.url], turn_server.secret)
    assert ice.gateway_urls() == (None, DEAD_UDP)  # nothing probed yet: configured order

    # The "browser" relays through the working server (a real one would try every URL).
    browser_config = ice_servers([turn_server.url], turn_server.secret).for_gateway("browser")

    # First call: aioice gathers from the dead server in silence; the check names it at once.
    browser, gateway = Talker(browser_config), Talker(ice.for_gateway("call_1"))
    try:
        with pytest.raises(RelayUnavailable, match="127.0.0.1:9.*no answer"):
            await negotiate(browser, gateway, ice)
    finally:
        await browser.close()
        await gateway.close()

    # Second call: the next URL serves, and media flows through it.
    assert ice.gateway_urls() == (None, turn_server.url)
    browser, gateway = Talker(browser_config), Talker(ice.for_gateway("call_2"))
    try:
        await negotiate(browser, gateway, ice)
        await connected(browser, gateway)
        assert selected_route(gateway.pc) == "relay/relay"
    finally:
        await browser.close()
        await gateway.close()


async def test_probes_tell_working_dead_and_misconfigured_servers_apart(turn_server: TurnServer) -> None:  # noqa: F811
    urls = [DEAD_UDP, turn_server.tcp_url, turn_server.url, turn_server.stun_url]
    ice = ice_servers(urls, turn_server.secret, policy="all")
    await ice.check()
    assert "no answer" in ice.health[DEAD_UDP]
    assert ice.health[turn_server.url] is None and ice.health[turn_server.tcp_url] is None
    assert ice.health[turn_server.stun_url] is None
    # Healthy servers only; UDP relays before TCP ones whatever the configured order.
    assert ice.gateway_urls() == (turn_server.stun_url, turn_server.url)
    servers = ice.for_gateway().iceServers
    assert [s.urls for s in servers] == [turn_server.stun_url, turn_server.url]
    assert servers[1].username.endswith(":gateway") and servers[1].credential

    wrong = ice_servers([turn_server.url], "not-the-secret")
    await wrong.check()
    assert "401" in wrong.health[turn_server.url]


async def test_browsers_get_every_url_and_long_enough_credentials(turn_server: TurnServer) -> None:  # noqa: F811
    ice = ice_servers([turn_server.stun_url, DEAD_UDP, turn_server.url], turn_server.secret, clock=lambda: 1000.0)
    ice.health[DEAD_UDP] = "no answer"  # health only steers the gateway's own peer; browsers try everything
    (stun_entry, turn_entry) = ice.for_browser("sess_1", token_expires_at=1600)
    assert stun_entry == {"urls": [turn_server.stun_url]}
    assert turn_entry["urls"] == [DEAD_UDP, turn_server.url]
    assert turn_entry["username"] == "5200:sess_1"  # token expiry + TURN_CREDENTIAL_TTL (3600)
    assert turn_server.secret not in str(ice.for_browser("sess_1"))


@pytest.mark.parametrize("gateway_policy", ["all", "relay"])
async def test_a_browser_whose_relay_was_refused_hears_it_at_once(turn_server: TurnServer,  # noqa: F811
                                                                  gateway_policy: str) -> None:
    """A relay-only browser with refused credentials offers no candidate and ends them: aioice
    then gathers nothing on the gateway either. The offer is refused with the cause, and the
    (healthy) TURN server is not blamed."""
    ice = ice_servers([turn_server.url], turn_server.secret, policy=gateway_policy)
    forged = ice_servers([turn_server.url], "not-the-secret")
    browser = Talker(forged.for_gateway("browser"))
    gateway = Talker(ice.for_gateway("call_1"))
    started = time.monotonic()
    try:
        with pytest.raises(NoCandidates) as refused:
            await negotiate(browser, gateway, ice)
        assert time.monotonic() - started < 2
        assert refused.value.status == 400 and refused.value.code == "no_ice_candidates"
        assert "expired or forged" in refused.value.message and "new client secret" in refused.value.message
        assert ice.health[turn_server.url] is None
    finally:
        await browser.close()
        await gateway.close()
    assert turn_server.refused("browser")


@pytest.mark.parametrize("gateway_policy", ["all", "relay"])
async def test_an_offer_with_only_mdns_host_names(turn_server: TurnServer, gateway_policy: str) -> None:  # noqa: F811
    """Browsers hide host addresses behind mDNS names. A relay-only gateway must ignore them, and
    one that may use host candidates cannot resolve a name from another network: with no relay
    from the browser the call cannot connect, and is refused with that reason at once (the
    gateway's own healthy TURN server is not blamed)."""
    ice = ice_servers([turn_server.url], turn_server.secret, policy=gateway_policy)
    browser = Talker(RTCConfiguration(iceServers=[]))
    gateway = Talker(ice.for_gateway("call_1"))
    try:
        await browser.pc.setLocalDescription(await browser.pc.createOffer())
        sdp = re.sub(r"(a=candidate:\S+ \d+ \S+ \d+ )\S+( \d+ typ host)",
                     r"\g<1>0d1e2c3b-4a59-4687-8796-a5b4c3d2e1f0.local\2", browser.pc.localDescription.sdp)
        assert ".local" in sdp and "a=end-of-candidates" in sdp
        await gateway.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        await gateway.pc.setLocalDescription(await gateway.pc.createAnswer())
        why = "did not resolve" if gateway_policy == "all" else "a relay-only gateway cannot use"
        with pytest.raises(NoCandidates, match=f"only ICE candidates are mDNS host names, which {why}"):
            await ice.check_candidates(gateway.pc, gateway.configuration)
        assert ice.health[turn_server.url] is None
    finally:
        await browser.close()
        await gateway.close()


async def test_an_ice_timeout_is_explained_from_the_candidates_each_side_brought(
        turn_server: TurnServer) -> None:  # noqa: F811
    """A browser with host candidates only (its relay refused, no STUN) that no path reaches."""
    config = config_for([turn_server.url], turn_server.secret, policy="all")
    browser = Talker(RTCConfiguration(iceServers=[]))
    gateway = Talker(IceServers(config).for_gateway("call_1"))
    try:
        await browser.pc.setLocalDescription(await browser.pc.createOffer())
        await gateway.pc.setRemoteDescription(browser.pc.localDescription)
        await gateway.pc.setLocalDescription(await gateway.pc.createAnswer())
        reason = explain_ice_failure(gateway.pc, config)
        assert "browser offered no relay candidate" in reason and "expired or forged" in reason
        assert "browser candidates" in reason and "host" in reason
        no_turn = config_for([], None, policy="all")
        assert "no TURN server configured" in explain_ice_failure(gateway.pc, no_turn)
    finally:
        await browser.close()
        await gateway.close()
