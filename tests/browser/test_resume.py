"""A call whose network path dies comes back on its own: the module resumes it with the
gateway's resume token on a new connection, and the conversation simply goes on.

The outage is real: nftables drops every UDP packet to and from the gateway's media ports (the
ones in its SDP answer), as when a phone leaves Wi-Fi. Nothing is faked on either side; the
browser notices the dead path through its own ICE checks and the gateway through its liveness
watch. Needs root and ``nft`` (scripts/setup_net.sh).
"""

from __future__ import annotations

import pytest

from tests.conftest import GatewayFactory
from tests.fake_upstream import FakeRealtimeServer

from .conftest import (
    WEB,
    answer_ports,
    dropped_udp,
    open_page,
    say,
    screenshot,
    start_call,
    state_of,
    until,
    wait_state,
)

pytestmark = pytest.mark.browser

async def test_a_dead_network_path_is_resumed_with_the_same_conversation(make_gateway: GatewayFactory,
                                                                         fake_upstream: FakeRealtimeServer,
                                                                         launch) -> None:
    gateway = await make_gateway(web_root=WEB)
    browser = await launch()
    _, page = await open_page(browser, gateway.url, mic=True)
    answer = await start_call(page)
    await page.evaluate("""() => {
        window.recoveries = [];
        window.realtimePage.client.addEventListener('recovered', (e) => window.recoveries.push(e.detail));
    }""")

    await say(page, "pt_br_capital_brasil")
    await wait_state(page, "playing", timeout=20)
    await wait_state(page, "recording", timeout=20)
    (call,) = gateway.state.calls

    with dropped_udp(answer_ports(answer)):
        # The browser warns, then offers a new connection with its resume token (to new ports).
        await page.wait_for_function("window.recoveries.some((r) => r.resumed)", timeout=25_000)
    assert call.resumes == 1 and not call.ended
    assert len(gateway.state.calls) == 1 and len(fake_upstream.sessions) == 1  # same call, same upstream session
    assert await state_of(page) == "recording"
    assert not await page.locator("#messages .message").count()  # the "unstable" warning is gone
    assert await page.is_hidden("#reconnect")

    # The conversation goes on over the new connection: the user is heard, the answer plays.
    await say(page, "pt_br_capital_brasil")
    await wait_state(page, "playing", timeout=20)
    await until(lambda: fake_upstream.sessions[0].turns >= 2, timeout=10)
    assert await page.locator("#transcript .turn.user").count() >= 2
    await screenshot(page, "desktop-resumed")


async def test_a_call_that_cannot_come_back_says_so(make_gateway: GatewayFactory, launch) -> None:
    """The gateway let the call go (no resume within its grace): the page reports the loss."""
    gateway = await make_gateway(web_root=WEB, resume_grace_s=0.0)
    browser = await launch()
    _, page = await open_page(browser, gateway.url, mic=True)
    answer = await start_call(page)
    with dropped_udp(answer_ports(answer)):
        await page.wait_for_selector('#messages .message[data-code="connection_lost"]', timeout=30_000)
    assert await state_of(page) == "idle"
    assert await page.is_visible("#reconnect")
    await until(lambda: len(gateway.state.calls) == 0, timeout=10)
