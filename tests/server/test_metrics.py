"""/metrics during a real call: the series an operator sizes and alerts on are there and move."""

from __future__ import annotations

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import RunningGateway
from tests.server.test_call import connected, turn
from tests.server.test_call_lifecycle import until


async def scrape(gateway: RunningGateway) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{gateway.url}/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            text = await response.text()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples, name: str, **labels: str) -> float:
    wanted = {"worker": "0", **labels}
    return sum(v for (n, ls), v in samples.items() if n == name and dict(ls).items() >= wanted.items())


async def test_metrics_during_and_after_a_call(gateway: RunningGateway) -> None:
    peer = await connected(gateway)
    try:
        await turn(peer)
        during = await scrape(gateway)
        assert value(during, "gateway_active_calls") == 1
        assert value(during, "gateway_calls_started_total") == 1
        assert value(during, "gateway_call_setup_seconds_count") == 1
        assert 0 < value(during, "gateway_call_setup_seconds_sum") < 5
        assert value(during, "gateway_upstream_connect_seconds_count") == 1
        assert value(during, "gateway_turn_latency_seconds_count") == 1
        assert 0.5 < value(during, "gateway_turn_latency_seconds_sum") < 5  # includes the 600 ms VAD wait
        assert value(during, "gateway_mic_frames_total", origin="decoded") > 50
        inbound = value(during, "gateway_added_latency_seconds_count", direction="inbound")
        assert inbound > 50
        assert value(during, "gateway_added_latency_seconds_sum", direction="inbound") / inbound < 0.02
        assert value(during, "gateway_added_latency_seconds_count", direction="outbound") >= 1
    finally:
        await peer.close()
    await until(lambda: len(gateway.state.calls) == 0)
    after = await scrape(gateway)
    assert value(after, "gateway_active_calls") == 0
    assert value(after, "gateway_calls_ended_total", reason="peer_closed") == 1
