"""The upstream client: URLs, auth headers, and handshake failures mapped to clear reasons."""

from __future__ import annotations

import pytest

from gateway.realtime.upstream import Upstream, UpstreamError, auth_headers, realtime_url
from tests.fake_upstream import FakeRealtimeServer


def test_url_and_headers() -> None:
    assert realtime_url("wss://api.openai.com/v1/realtime", "gpt-realtime") == \
        "wss://api.openai.com/v1/realtime?model=gpt-realtime"
    assert realtime_url("wss://h/openai/realtime?api-version=2025&deployment=d", "m") == \
        "wss://h/openai/realtime?api-version=2025&deployment=d"
    assert auth_headers("Authorization", "sk-1") == {"Authorization": "Bearer sk-1"}
    assert auth_headers("api-key", "k") == {"api-key": "k"}
    assert auth_headers("Authorization", None) == {}


async def test_handshake_failures(fake_upstream: FakeRealtimeServer) -> None:
    with pytest.raises(UpstreamError) as caught:
        await Upstream.connect(fake_upstream.url, {"Authorization": "Bearer nope"}, 5)
    assert caught.value.code == "invalid_api_key" and caught.value.fatal
    with pytest.raises(UpstreamError) as caught:
        await Upstream.connect("ws://127.0.0.1:9/v1/realtime", {}, 5)
    assert caught.value.code == "upstream_unavailable" and not caught.value.fatal
    upstream = await Upstream.connect(fake_upstream.url, auth_headers("Authorization", "sk-test-upstream-key"), 5)
    events = upstream.events()
    first = await anext(events)
    assert first["type"] == "session.created"
    await upstream.close()
