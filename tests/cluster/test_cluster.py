"""Many instances behind a real nginx, sharing a real Redis: what a user and an operator notice.

Three gateway processes, each in a network namespace of its own with its own address, behind
nginx on the host (the shipped deploy/nginx/realtime-gateway.conf, and a plain round-robin
front), sharing one redis-server; real aiortc peers place the calls.
"""

from __future__ import annotations

import asyncio
import json
import signal
import statistics
import time
from typing import Any

import aiohttp
import pytest
from aiortc import RTCSessionDescription
from openai import AsyncOpenAI

from gateway.server.redis_admission import HEARTBEAT_S, HOLDER_TTL_S
from gateway.server.worker_pool import instance_of
from tests.browser.conftest import open_page, wait_state, write_mic_wav
from tests.cluster.bed import ClusterBed, Instance
from tests.cluster.conftest import API_KEY, MAX_CALLS
from tests.peers import ClientPeer
from tests.server.test_sideband import closed_with
from tests.server.test_soak import vanish
from tests.server.test_workers import resume_when_noticed

pytestmark = pytest.mark.netns


async def request(method: str, url: str, **kwargs: Any) -> tuple[int, str, dict[str, str]]:
    async with aiohttp.ClientSession() as http, http.request(method, url, **kwargs) as response:
        return response.status, await response.text(), dict(response.headers)


async def mint(base: str) -> str:
    status, text, _ = await request("POST", f"{base}/v1/realtime/client_secrets", json={}, headers=API_KEY)
    assert status == 200, text
    return str(json.loads(text)["value"])


async def offer(peer: ClientPeer, base: str, token: str) -> tuple[int, str]:
    """Offer ``peer``'s SDP at ``base`` with ``token``; on 201 the peer is connected."""
    await peer.pc.setLocalDescription(await peer.pc.createOffer())
    status, text, headers = await request("POST", f"{base}/v1/realtime/calls", data=peer.pc.localDescription.sdp,
                                          headers={"Content-Type": "application/sdp",
                                                   "Authorization": f"Bearer {token}"})
    if status == 201:
        peer.location, peer.resume_token = headers["Location"], headers["X-Resume-Token"]
        await peer.pc.setRemoteDescription(RTCSessionDescription(sdp=text, type="answer"))
    return status, text


async def call(base: str) -> ClientPeer:
    """A connected call placed through ``base``, its session started."""
    peer = ClientPeer(base)
    await peer.connect(mint_headers=API_KEY)
    await peer.channel_open()
    await peer.wait_for("session.created")
    return peer


def owner(peer: ClientPeer) -> str:
    assert peer.location is not None
    return str(instance_of(peer.location.rsplit("/", 1)[-1]))


def error_code(text: str) -> str:
    return str(json.loads(text)["error"]["code"])


async def still_talking(peer: ClientPeer) -> None:
    """The call answers a client event: its upstream session and data channel are alive."""
    after = len(peer.events)
    peer.send({"type": "session.update", "event_id": "evt_probe", "session": {"type": "realtime", "instructions": "x"}})
    await peer.wait_for("session.updated", after=after, timeout=10)


async def hang_up_all(base: str, peers: list[ClientPeer]) -> None:
    statuses = [(await request("DELETE", f"{base}{p.location}"))[0] for p in peers if p.location]
    await asyncio.gather(*(p.close() for p in peers))
    assert statuses == [204] * len(statuses), statuses


def by_name(bed: ClusterBed, name: str) -> Instance:
    return next(i for i in bed.instances if i.name == name)


async def test_a_secret_minted_at_the_front_works_once_on_any_instance(bed: ClusterBed) -> None:
    secret = await mint(bed.front)
    minted_on = instance_of(secret)
    other = next(i for i in bed.instances if i.name != minted_on)
    peer = ClientPeer(other.url)
    status, text = await offer(peer, other.url, secret)
    assert status == 201, text
    assert peer.location is not None and owner(peer) == other.name  # created where it was presented
    for instance in bed.instances:  # spent for the whole cluster, the minting instance included
        again = ClientPeer(instance.url)
        status, text = await offer(again, instance.url, secret)
        await again.close()
        assert (status, error_code(text)) == (401, "invalid_client_secret"), (instance.name, text)
    head, payload, signature = (await mint(bed.front)).split(".")
    tampered = f"{head}.{payload[:-4]}{'AAAA' if payload[-4:] != 'AAAA' else 'BBBB'}.{signature}"
    forged = ClientPeer(other.url)
    status, text = await offer(forged, other.url, tampered)
    await forged.close()
    assert (status, error_code(text)) == (401, "invalid_client_secret")
    await hang_up_all(bed.front, [peer])


async def test_follow_up_requests_through_the_front_reach_the_owner(bed: ClusterBed) -> None:
    peers = [await call(bed.front) for _ in range(3)]
    try:
        assert len({owner(p) for p in peers}) >= 2, [p.location for p in peers]  # least_conn spread them
        for peer in peers:  # trickle (PATCH) routed by the id in the URL
            fragment = ("a=ice-ufrag:x\r\na=ice-pwd:y\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n"
                        "a=end-of-candidates\r\n")
            status, text, _ = await request("PATCH", f"{bed.front}{peer.location}", data=fragment,
                                            headers={"Content-Type": "application/trickle-ice-sdpfrag"})
            assert status == 204, (owner(peer), text)
        # Resume (Bearer rsm_<instance>_…) routed by nginx's map on Authorization
        first = peers[0]
        assert first.resume_token is not None and instance_of(first.resume_token) == owner(first)
        await vanish(first)
        resumed = await resume_when_noticed(bed.front, first.resume_token)
        assert resumed.location == first.location
        # The sideband (GET /v1/realtime?call_id=rtc_<instance>_…, a WebSocket) routed by the query
        for peer in peers[1:]:
            async with aiohttp.ClientSession() as http:
                async with http.ws_connect(f"{bed.front}/v1/realtime?call_id={peer.location.rsplit('/', 1)[-1]}",
                                           headers=API_KEY) as ws:
                    first_event = json.loads((await ws.receive(timeout=10)).data)
                    assert first_event["type"] == "session.created", first_event
        await resumed.channel_open()
        await still_talking(resumed)
        await first.close()
        peers[0] = resumed
    finally:
        await hang_up_all(bed.front, peers)


async def test_a_round_robin_front_works_through_forwarding(bed: ClusterBed) -> None:
    """nginx knowing nothing of ids: any instance passes a call's request on to its owner."""
    peers = [await call(bed.round_robin) for _ in range(3)]  # mint on one instance, call on the next
    try:
        target = peers[0]
        home = by_name(bed, owner(target))
        elsewhere = next(i for i in bed.instances if i.name != home.name)
        fragment = "a=ice-ufrag:x\r\na=ice-pwd:y\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=end-of-candidates\r\n"
        hops: dict[str, list[float]] = {"direct": [], "forwarded": []}
        for _ in range(15):
            for kind, instance in (("direct", home), ("forwarded", elsewhere)):
                started = time.perf_counter()
                status, text, _ = await request("PATCH", f"{instance.url}{target.location}", data=fragment,
                                                headers={"Content-Type": "application/trickle-ice-sdpfrag"})
                hops[kind].append((time.perf_counter() - started) * 1000)
                assert status == 204, (kind, text)
        print(f"PATCH median: direct {statistics.median(hops['direct']):.1f} ms, "
              f"forwarded {statistics.median(hops['forwarded']):.1f} ms")
        await still_talking(target)
        status, _, _ = await request("DELETE", f"{elsewhere.url}{target.location}")  # hung up from elsewhere
        assert status == 204
        peers.remove(target)
        await target.close()
        left = sum(owner(p) == home.name for p in peers)
        deadline = time.monotonic() + 5
        while json.loads((await request("GET", f"{home.url}/healthz"))[1])["calls"] != left:
            assert time.monotonic() < deadline, "the forwarded hang-up did not end the call on its owner"
            await asyncio.sleep(0.1)
    finally:
        await hang_up_all(bed.round_robin, peers)


async def test_a_sideband_through_the_round_robin_front_is_piped_to_the_owner(bed: ClusterBed) -> None:
    """The official client's sideband lands on whichever instance round robin picks; one that does
    not hold the call pipes it to the owner, which serves it as if the backend were connected there."""
    peer = await call(bed.round_robin)
    connection = None
    try:
        call_id, home = str(peer.location).rsplit("/", 1)[-1], owner(peer)
        client = AsyncOpenAI(api_key=API_KEY["Authorization"].split()[1], base_url=f"{bed.round_robin}/v1")
        vias: list[str] = []
        for _ in range(12):  # round robin over three instances: a non-owner within a few connections
            candidate = await client.realtime.connect(call_id=call_id).enter()
            via = candidate._connection.response.headers.get("Via", "")
            vias.append(via)
            if via.startswith("1.1 gateway-gw-") and via != f"1.1 gateway-{home}":
                connection = candidate
                break
            first = await candidate.recv()  # served by the owner itself: a sideband all the same
            assert first.type == "session.created"
            await candidate.close()
        assert connection is not None, f"no connection was piped by another instance: {vias}"
        first = await connection.recv()
        assert first.type == "session.created" and first.session.id == peer.events[0]["session"]["id"]
        await connection.session.update(session={"type": "realtime", "instructions": "Fale devagar."})
        updated = await connection.recv()
        assert updated.type == "session.updated" and updated.session.instructions == "Fale devagar."
        await peer.wait_for("session.updated", where=lambda e: e["event_id"] == updated.event_id)
        status, _, _ = await request("DELETE", f"{bed.round_robin}{peer.location}")  # hung up, anywhere
        assert status == 204
        assert await closed_with(connection) == (1000, "call ended: client_hangup")
    finally:
        if connection is not None:
            await connection.close()
        await peer.close()


async def test_chromium_calls_through_the_front(bed: ClusterBed, launch: Any, tmp_path: Any) -> None:
    """The reference page served by nginx: call after call, each on the instance nginx picks, with
    its media straight to that instance's own address."""
    browser = await launch(write_mic_wav(tmp_path / "mic.wav", [], total=120.0))
    context, page = await open_page(browser, bed.front)
    # GATEWAY_API_KEYS is set: the application's backend would mint; here the key is added on the way
    await page.route("**/v1/realtime/client_secrets",
                     lambda route: route.continue_(headers={**route.request.headers, **API_KEY}))
    errors: list[str] = []
    locations: list[str] = []
    page.on("response", lambda r: errors.append(f"{r.request.method} {r.url} {r.status}")
            if "/v1/" in r.url and r.status >= 400 else None)
    page.on("response", lambda r: locations.append(r.headers.get("location", ""))
            if r.request.method == "POST" and r.url.endswith("/v1/realtime/calls") else None)
    try:
        for _ in range(3):
            await page.click("#main-button")
            await wait_state(page, "recording")
            await page.click("#main-button")  # hang up
            await wait_state(page, "idle")
    finally:
        await context.close()
    assert not errors, errors
    owners = [instance_of(location.rsplit("/", 1)[-1]) for location in locations]
    assert len(owners) == 3 and all(o in {i.name for i in bed.instances} for o in owners), locations


async def test_max_calls_holds_for_the_whole_cluster(bed: ClusterBed) -> None:
    peers = [await call(bed.front) for _ in range(MAX_CALLS)]
    try:
        assert len({owner(p) for p in peers}) >= 2
        extra = ClientPeer(bed.front)
        status, text = await offer(extra, bed.front, await mint(bed.front))
        await extra.close()
        assert (status, error_code(text)) == (503, "at_capacity"), text
        status, _, _ = await request("DELETE", f"{bed.front}{peers[0].location}")
        assert status == 204
        await peers.pop(0).close()
        peers.append(await call(bed.front))  # a slot freed anywhere is free everywhere
    finally:
        await hang_up_all(bed.front, peers)


async def test_redis_restarted_mid_call(bed: ClusterBed) -> None:
    peer = await call(bed.front)
    try:
        bed.stop_redis()
        await still_talking(peer)  # the call in progress goes on
        secret = await mint(bed.front)  # minting needs no Redis (rate limits fall back per instance)
        refused = ClientPeer(bed.front)
        status, text = await offer(refused, bed.front, secret)
        await refused.close()
        assert (status, error_code(text)) == (503, "shared_store_unavailable"), text
        bed.start_redis()
        deadline = time.monotonic() + 10
        while True:  # within a heartbeat or two the instances write their slots back
            later = ClientPeer(bed.front)
            status, text = await offer(later, bed.front, await mint(bed.front))
            if status == 201:
                break
            await later.close()
            assert time.monotonic() < deadline, text
            await asyncio.sleep(0.5)
        await later.channel_open()
        await still_talking(peer)
        await hang_up_all(bed.front, [later])
    finally:
        await hang_up_all(bed.front, [peer])


async def test_sigterm_drains_and_a_killed_instance_is_routed_around(bed: ClusterBed) -> None:
    draining = bed.instances[0]
    peer = ClientPeer(draining.url)
    status, text = await offer(peer, draining.url, await mint(draining.url))
    assert status == 201, text
    await peer.channel_open()
    bed.kill(draining, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while True:
        status, text, _ = await request("GET", f"{draining.url}/healthz")
        if status == 503:
            break
        assert time.monotonic() < deadline, text
        await asyncio.sleep(0.1)
    assert json.loads(text)["status"] == "draining"
    others = [await call(bed.front) for _ in range(3)]
    assert draining.name not in {owner(p) for p in others}  # nginx moved on from the 503
    await still_talking(peer)  # the existing call finishes in peace
    await hang_up_all(bed.front, [peer])
    assert draining.process is not None and await asyncio.to_thread(draining.process.wait, 30) == 0

    killed = by_name(bed, owner(others[0]))
    bed.kill(killed)
    victims = [p for p in others if owner(p) == killed.name]
    # Its calls ended with it: their requests through the front say so, as the gateway's JSON error
    for method, path, headers in (("DELETE", victims[0].location, {}),
                                  ("POST", "/v1/realtime/calls", {"Authorization": f"Bearer {victims[0].resume_token}",
                                                                  "Content-Type": "application/sdp"})):
        status, text, answer = await request(method, f"{bed.front}{path}", headers=headers, data="v=0\r\n")
        assert (status, error_code(text), answer.get("Retry-After")) == (503, "instance_unavailable", "2"), text
    status, text, _ = await request("GET", f"{bed.front}/v1/realtime?call_id={victims[0].location.rsplit('/', 1)[-1]}",
                                    headers={**API_KEY, "Connection": "Upgrade", "Upgrade": "websocket",
                                             "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert (status, error_code(text)) == (503, "instance_unavailable"), text
    await asyncio.gather(*(p.close() for p in victims))
    await hang_up_all(bed.front, [p for p in others if p not in victims])
    fresh = [await call(bed.front)]  # the dead instance's slots still count, for now
    assert killed.name not in {owner(p) for p in fresh}
    await asyncio.sleep(HOLDER_TTL_S + HEARTBEAT_S)  # its heartbeat expired: so did its call slots
    fresh += [await call(bed.front) for _ in range(MAX_CALLS - len(fresh))]
    await hang_up_all(bed.front, fresh)


async def test_media_ports_stay_in_the_instance_range(bed: ClusterBed) -> None:
    """Each instance's namespace has its own ip_local_port_range: its ICE candidates use only it."""
    peer = ClientPeer(bed.front)
    await peer.pc.setLocalDescription(await peer.pc.createOffer())
    status, text, headers = await request("POST", f"{bed.front}/v1/realtime/calls", data=peer.pc.localDescription.sdp,
                                          headers={"Content-Type": "application/sdp",
                                                   "Authorization": f"Bearer {await mint(bed.front)}"})
    assert status == 201, text
    index = [i.name for i in bed.instances].index(str(instance_of(headers["Location"].rsplit("/", 1)[-1])))
    low, high = bed.media_ports(index)
    ports = [int(line.split()[5]) for line in text.split("\r\n") if line.startswith("a=candidate:")]
    assert ports and all(low <= port <= high for port in ports), (ports, low, high)
    peer.location = headers["Location"]
    await hang_up_all(bed.front, [peer])
