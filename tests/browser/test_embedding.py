"""The module embedded in someone else's page, on another origin; and a relay-only deployment."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import GatewayFactory
from tests.fake_upstream import FakeRealtimeServer
from tests.turn_server import turn_server  # noqa: F401  (fixture)

from .conftest import WEB, inbound_audio_energy, open_page, screenshot, until, wait_state, write_mic_wav

pytestmark = pytest.mark.browser

# The README's embedding example, word for word but for the gateway's address and the log.
EMBED_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Shop help</title></head>
<body><button id="talk">Talk</button><pre id="log"></pre>
<script type="module">
  const log = (line) => { document.querySelector("#log").textContent += line + "\\n"; };
  import { RealtimeClient } from "GATEWAY/realtime-client.js";
  const client = new RealtimeClient({ baseUrl: "GATEWAY" });
  client.addEventListener("transcript", ({ detail }) => { if (detail.final) log(`${detail.role}: ${detail.text}`); });
  client.addEventListener("conversationstate", ({ detail }) => log(`state: ${detail.state}`));
  client.addEventListener("latency", ({ detail }) => log(`latency: ${detail.ms} ms`));
  client.addEventListener("error", ({ detail }) => log(`error: ${detail.code}`));
  document.querySelector("#talk").onclick = () =>
    client.state === "connected" ? client.disconnect() : client.connect();
  window.client = client;
</script></body></html>
"""


async def test_another_site_embeds_the_module(make_gateway: GatewayFactory, fake_upstream: FakeRealtimeServer,
                                              static_site, launch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    site_root = tmp_path / "site"
    site_root.mkdir()
    site = await static_site(site_root)
    gateway = await make_gateway(web_root=WEB, allowed_origins=(site,))
    (site_root / "index.html").write_text(EMBED_PAGE.replace("GATEWAY", gateway.url))
    assert site.rsplit(":", 1)[1] != gateway.url.rsplit(":", 1)[1]  # two origins
    browser = await launch(write_mic_wav(tmp_path / "mic.wav", [(1.5, 1.2)], total=15.0))
    _, page = await open_page(browser, site)
    await page.click("#talk")
    log = page.locator("#log")
    await page.wait_for_function("document.querySelector('#log').textContent.includes('state: playing')",
                                 timeout=20_000)
    await page.wait_for_function("document.querySelector('#log').textContent.includes('state: recording\\n')"
                                 " && document.querySelector('#log').textContent.split('state: recording').length > 2",
                                 timeout=20_000)
    text = await log.text_content() or ""
    assert f"user: {fake_upstream.behaviour.user_transcript}" in text
    assert f"assistant: {fake_upstream.behaviour.reply_text}" in text
    assert "latency:" in text and "error:" not in text, text
    assert (await page.evaluate("window.client.callUrl")).startswith(f"{gateway.url}/v1/realtime/calls/")
    await page.click("#talk")  # hang up: the DELETE crosses origins too (Location is exposed)
    await until(lambda: len(gateway.state.calls) == 0, timeout=5)
    await screenshot(page, "desktop-embedded")


async def test_relay_only_through_a_real_coturn(make_gateway: GatewayFactory, fake_upstream: FakeRealtimeServer,
                                                turn_server, launch, tmp_path: Path) -> None:  # noqa: F811
    from gateway.config import IceServer

    fake_upstream.behaviour.reply_seconds = 2.0
    gateway = await make_gateway(web_root=WEB, ice_servers=(IceServer(turn_server.url),),
                                 turn_secret=turn_server.secret, ice_transport_policy="relay")
    browser = await launch(write_mic_wav(tmp_path / "mic.wav", [(1.5, 1.2)], total=10.0))
    _, page = await open_page(browser, f"{gateway.url}/?processing=off&relay=1")
    await page.click("#main-button")
    await wait_state(page, "playing", timeout=30)
    await wait_state(page, "recording", timeout=20)
    assert await inbound_audio_energy(page) > 0
    local_type = await page.evaluate("""async () => {
        const stats = await window.realtimePage.client.peerConnection.getStats();
        let pair = null;
        stats.forEach((s) => { if (s.type === 'transport') pair = stats.get(s.selectedCandidatePairId); });
        return stats.get(pair.localCandidateId).candidateType;
    }""")
    assert local_type == "relay"
    assert turn_server.log_text().count("ALLOCATE processed, success") >= 2
