"""Property tests on everything the outside world controls: HTTP bodies and headers, SDP offers,
trickle fragments and data-channel events. Every answer is a clean JSON error (or a success),
nothing crashes or hangs, and a call running in the same process carries on throughout."""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.config import Config
from gateway.core.conversation import Conversation
from gateway.core.policy import SessionPolicy
from tests.conftest import gateway_config, start_gateway
from tests.fake_upstream import FakeRealtimeServer
from tests.peers import ClientPeer
from tests.schema import server_event_problem
from tests.server.test_call import turn

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
ALLOWED = {200, 201, 204, 400, 401, 403, 404, 405, 413, 415, 429, 503}
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                                       max_size=4), max_leaves=12)
event_types = st.sampled_from(["session.update", "response.create", "response.cancel", "conversation.item.create",
                               "conversation.item.truncate", "conversation.item.delete", "output_audio_buffer.clear",
                               "input_audio_buffer.commit", "input_audio_buffer.append", "nonsense", ""])


class ThreadedGateway:
    """A gateway (and fake upstream) on its own event loop, so sync property tests can hit it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.fake: FakeRealtimeServer = self.run(self._enter_fake())
        self.gateway, self._runner = self.run(start_gateway(gateway_config(upstream_url=self.fake.url)))
        self.port = int(self.gateway.url.rsplit(":", 1)[1])
        self.requests = 0

    def run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(60)

    async def _enter_fake(self) -> FakeRealtimeServer:
        return await FakeRealtimeServer().__aenter__()

    def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> tuple[int, Any]:
        self.requests += 1
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        if response.status >= 400:
            error = json.loads(data)["error"]  # must be JSON, with the OpenAI shape
            assert error["message"] and error["code"] and error["type"]
        return response.status, data

    def close(self) -> None:
        self.run(self._runner.cleanup())
        self.run(self.fake.__aexit__(None, None, None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


@pytest.fixture(scope="module")
def target() -> Iterator[ThreadedGateway]:
    gateway = ThreadedGateway()

    async def make_peer() -> ClientPeer:  # aiortc objects belong to the loop they are made on
        return ClientPeer(gateway.gateway.url)

    peer = gateway.run(make_peer())
    gateway.run(peer.connect())
    gateway.run(peer.wait_for("session.created", timeout=10))
    gateway.peer = peer  # type: ignore[attr-defined]
    gateway.first_call_id = next(iter(gateway.gateway.state.calls)).id  # type: ignore[attr-defined]
    yield gateway
    gateway.run(peer.close())
    gateway.close()


def valid_offer(target: ThreadedGateway) -> str:
    async def make() -> str:
        from tests.server.test_signaling import offer_sdp
        return await offer_sdp()
    return target.run(make())


@FUZZ
@given(body=st.binary(max_size=3000) | json_values.map(lambda v: json.dumps(v).encode()),
       content_type=st.sampled_from(["application/json", "text/plain", "", "application/sdp", "multipart/form-data"]))
def test_client_secrets_bodies(target: ThreadedGateway, body: bytes, content_type: str) -> None:
    status, _ = target.request("POST", "/v1/realtime/client_secrets", body, {"Content-Type": content_type})
    assert status in ALLOWED


@FUZZ
@given(data=st.data())
def test_sdp_offers(target: ThreadedGateway, data: st.DataObject) -> None:
    offer = target.__dict__.setdefault("offer", valid_offer(target))
    lines = offer.split("\r\n")
    mutation = data.draw(st.sampled_from(["drop", "duplicate", "garble", "truncate", "swap_kind", "bytes"]))
    index = data.draw(st.integers(0, len(lines) - 1))
    if mutation == "drop":
        del lines[index]
    elif mutation == "duplicate":
        lines[index:index] = [lines[index]] * data.draw(st.integers(1, 50))
    elif mutation == "garble":
        lines[index] = data.draw(st.text(max_size=80))
    elif mutation == "truncate":
        lines = lines[:index]
    elif mutation == "swap_kind":
        lines = [line.replace("m=audio", "m=video") for line in lines]
    body = "\r\n".join(lines).encode("utf-8", "surrogatepass") if mutation != "bytes" else data.draw(st.binary(max_size=2000))
    _, secret = target.request("POST", "/v1/realtime/client_secrets", b"{}", {"Content-Type": "application/json"})
    token = json.loads(secret)["value"]
    status, _ = target.request("POST", "/v1/realtime/calls", body,
                               {"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"})
    assert status in ALLOWED
    if status == 201:  # a mutation the parser tolerates: hang it up again
        target.run(_end_newest(target))


async def _end_newest(target: ThreadedGateway) -> None:
    calls = list(target.gateway.state.calls)
    for call in calls[1:]:  # the first is the long-running call the tests protect
        call.end("client_hangup")


@FUZZ
@given(fragment=st.text(max_size=600), content_type=st.sampled_from(["application/trickle-ice-sdpfrag", "text/plain"]))
def test_trickle_fragments(target: ThreadedGateway, fragment: str, content_type: str) -> None:
    call_id = next(iter(target.gateway.state.calls)).id
    status, _ = target.request("PATCH", f"/v1/realtime/calls/{call_id}", fragment.encode("utf-8", "surrogatepass"),
                               {"Content-Type": content_type})
    assert status in {204, 400, 415}


@FUZZ
@given(headers=st.dictionaries(st.sampled_from(["Authorization", "Content-Type", "Origin", "X-Forwarded-For",
                                                "Access-Control-Request-Method", "Access-Control-Request-Headers"]),
                               st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60)),
       method=st.sampled_from(["GET", "POST", "DELETE", "PATCH", "OPTIONS", "PUT"]),
       path=st.sampled_from(["/v1/realtime/calls", "/v1/realtime/client_secrets", "/v1/realtime/calls/rtc_x",
                             "/healthz", "/nope", "/v1/realtime/calls/rtc_x/hangup"]))
def test_headers_methods_and_paths(target: ThreadedGateway, headers: dict[str, str], method: str, path: str) -> None:
    status, _ = target.request(method, path, b"", headers)
    assert status in ALLOWED


@settings(max_examples=400, deadline=None)
@given(event=st.one_of(
    st.builds(lambda t, fields: json.dumps({"type": t, **fields}), event_types,
              st.dictionaries(st.sampled_from(["session", "item", "event_id", "item_id", "audio_end_ms", "response",
                                               "content_index"]), json_values, max_size=4)),
    st.text(max_size=200), st.binary(max_size=200)))
def test_data_channel_events_never_break_the_core(event: str | bytes) -> None:
    config = Config(openai_api_key="k", upstream="openai")
    conversation = Conversation(config.default_session(), SessionPolicy.from_fields(("model",)))
    conversation.upstream_opened()
    conversation.receive_upstream({"type": "session.updated", "event_id": "e", "session": conversation.session}, 0.0)
    conversation.data_to_client()
    conversation.receive_client(event, now=0.0)
    for out in conversation.data_to_client():
        assert server_event_problem(out) is None, out


def test_the_call_alongside_carried_on(target: ThreadedGateway) -> None:
    """Runs last in this module: after all the abuse, the first call still talks."""
    peer: ClientPeer = target.peer  # type: ignore[attr-defined]

    ended = [(call_id, summary.reason) for call_id, summary in target.gateway.state.calls.recent
             if call_id == target.first_call_id]  # type: ignore[attr-defined]
    assert not ended, f"the protected call ended: {ended}"

    async def nonsense_then_a_turn() -> None:
        for _ in range(200):
            peer.send({"type": "nonsense"})
        await turn(peer, timeout=20)

    target.run(nonsense_then_a_turn())
    assert target.requests > 300
