"""Every failure a user meets gets a plain pt-BR message saying what to do (and a way back).

Through the real gateway; the fake upstream stands in for OpenAI where the upstream must
misbehave on cue. Screenshots: artifacts/screenshots/<device>-error-<code>.png.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.async_api import Page, Route

from tests.conftest import GatewayFactory
from tests.fake_upstream import FakeRealtimeServer

from .conftest import PHONE, WEB, open_page, say, screenshot, state_of, wait_state, write_mic_wav
from .gateway_process import GatewayProcess, non_loopback_ip, self_signed_certificate

pytestmark = pytest.mark.browser


async def shows(page: Page, code: str, *words: str, timeout: float = 20.0) -> str:
    """The message for ``code`` is on screen, in pt-BR, containing ``words``; returns its text."""
    await page.wait_for_selector(f'#messages .message[data-code="{code}"]', timeout=timeout * 1000)
    text = await page.text_content("#messages") or ""
    for word in words:
        assert word.lower() in text.lower(), (code, text)
    assert await state_of(page) == "idle" or code in ("gateway_draining", "upstream_reconnecting")
    return text


async def test_microphone_denied_missing_or_unavailable_on_http(make_gateway: GatewayFactory, launch,
                                                               tmp_path: Path) -> None:
    gateway = await make_gateway(web_root=WEB)
    browser = await launch(extra_flags=["--deny-permission-prompts"], fake_ui=False)
    _, page = await open_page(browser, gateway.url, permissions=[])
    await page.click("#main-button")
    await shows(page, "mic_denied", "microfone", "configurações do navegador")
    await screenshot(page, "desktop-error-mic_denied")
    _, page = await open_page(browser, gateway.url, PHONE, permissions=[])
    await page.tap("#main-button")
    await shows(page, "mic_denied")
    await screenshot(page, "phone-error-mic_denied")

    browser = await launch(fake_device=False)  # a machine without any microphone
    _, page = await open_page(browser, gateway.url)
    await page.click("#main-button")
    await shows(page, "mic_missing", "Conecte um microfone")

    # Plain http on a real address (not localhost): browsers keep the microphone away.
    address = non_loopback_ip()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to load the page from")
    remote = await make_gateway(web_root=WEB, host="0.0.0.0")
    _, page = await open_page(browser, remote.url.replace("127.0.0.1", address), permissions=[])
    await page.click("#main-button")
    await shows(page, "insecure_context", "https")
    await screenshot(page, "desktop-error-insecure_context")


async def test_https_on_a_real_address_gets_the_microphone(fake_upstream: FakeRealtimeServer, launch,
                                                           tmp_path: Path) -> None:
    """What the insecure-context message asks for works: the same page over https."""
    address = non_loopback_ip()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to load the page from")
    cert, key = self_signed_certificate(tmp_path, address)
    async with GatewayProcess(fake_upstream, "--host", "0.0.0.0", "--tls-cert", str(cert), "--tls-key", str(key),
                              scheme="https", address=address) as gateway:
        browser = await launch(write_mic_wav(tmp_path / "mic.wav", [(1.5, 1.0)], total=10.0),
                               extra_flags=["--ignore-certificate-errors"])
        _, page = await open_page(browser, f"{gateway.url}/?processing=off")
        await page.click("#main-button")
        await wait_state(page, "playing", timeout=20)


async def test_gateway_gone_or_busy_or_a_forged_token(make_gateway: GatewayFactory, launch, tmp_path: Path) -> None:
    gateway = await make_gateway(web_root=WEB, max_calls=1)
    browser = await launch(write_mic_wav(tmp_path / "mic.wav", [], total=30.0))

    # The only call slot is taken: the next caller is told to come back shortly.
    _, first = await open_page(browser, gateway.url)
    await first.click("#main-button")
    await wait_state(first, "recording")
    _, page = await open_page(browser, gateway.url)
    await page.click("#main-button")
    await shows(page, "gateway_busy", "ocupado", "Tente de novo")
    await first.click("#main-button")
    await wait_state(first, "idle")

    # A client secret that the gateway never issued.
    _, page = await open_page(browser, gateway.url)
    await page.route("**/v1/realtime/client_secrets", lambda route: route.fulfill(
        status=200, content_type="application/json", body='{"value": "ek_forged", "expires_at": 0, "ice_servers": []}'))
    await page.click("#main-button")
    await shows(page, "token_rejected", "tentar de novo")

    # The gateway goes away after the page loaded.
    _, page = await open_page(browser, gateway.url, PHONE)
    await gateway.stop()
    await page.tap("#main-button")
    await shows(page, "gateway_unreachable", "Verifique sua conexão")
    await screenshot(page, "phone-error-gateway_unreachable")


async def test_audio_path_blocked(make_gateway: GatewayFactory, launch, tmp_path: Path) -> None:
    """ICE cannot connect (a firewall eats the UDP): the page gives up and suggests another network."""
    gateway = await make_gateway(web_root=WEB)
    browser = await launch(write_mic_wav(tmp_path / "mic.wav", [], total=30.0))
    _, page = await open_page(browser, gateway.url)

    async def unreachable_candidates(route: Route) -> None:
        # Neither side's candidates get through (the gateway could otherwise reach the browser's).
        offer = re.sub(r"a=candidate:[^\r\n]*\r\n", "", route.request.post_data or "")
        response = await route.fetch(post_data=offer)
        answer = re.sub(r"(a=candidate:\S+ \d+ \S+ \d+ )\S+ \d+", r"\g<1>203.0.113.9 9", await response.text())
        await route.fulfill(response=response, body=answer)

    await page.route("**/v1/realtime/calls", unreachable_candidates)
    await page.click("#main-button")
    await shows(page, "ice_failed", "outra rede", timeout=30)
    assert await page.is_visible("#reconnect")
    await screenshot(page, "desktop-error-ice_failed")


async def test_the_server_ends_the_session_and_the_page_reconnects(make_gateway: GatewayFactory,
                                                                   fake_upstream: FakeRealtimeServer, launch,
                                                                   tmp_path: Path) -> None:
    fake_upstream.behaviour.fatal_error_after_turns = 0  # "You exceeded your current quota." instead of a reply
    gateway = await make_gateway(web_root=WEB)
    browser = await launch()
    _, page = await open_page(browser, gateway.url, mic=True)
    await page.click("#main-button")
    await wait_state(page, "recording")
    await say(page, "pt_br_capital_brasil")
    text = await shows(page, "session_ended", "encerrada pelo servidor", "reconectar", "quota")
    assert "Detalhe técnico" in text  # the server's own words, apart from the plain explanation
    assert await page.is_visible("#reconnect")
    await screenshot(page, "desktop-error-session_ended")
    fake_upstream.behaviour.fatal_error_after_turns = None
    await page.click("#reconnect-button")
    await wait_state(page, "recording")
    assert not await page.is_visible("#reconnect") and not await page.locator("#messages .message").count()
    assert await page.evaluate("document.activeElement.id") == "main-button"


async def test_the_assistant_reconnects_behind_the_scenes(make_gateway: GatewayFactory,
                                                          fake_upstream: FakeRealtimeServer, launch) -> None:
    gateway = await make_gateway(web_root=WEB)
    browser = await launch()
    _, page = await open_page(browser, gateway.url, PHONE, mic=True)
    await page.tap("#main-button")
    await wait_state(page, "recording")
    fake_upstream.drop_connections()  # the upstream crashes: the gateway redials, the call stays up
    await shows(page, "upstream_reconnecting", "Reconectando")
    assert await page.get_attribute("#messages .message", "class") == "message warning"
    await screenshot(page, "phone-warning-upstream_reconnecting")
    await say(page, "pt_br_capital_brasil")
    await wait_state(page, "playing", timeout=20)  # the conversation goes on…
    assert not await page.locator("#messages .message").count()  # …and the warning is gone


async def test_the_gateway_restarts_or_dies_during_a_call(fake_upstream: FakeRealtimeServer, launch,
                                                          tmp_path: Path) -> None:
    browser = await launch(write_mic_wav(tmp_path / "mic.wav", [], total=60.0))
    async with GatewayProcess(fake_upstream, "--shutdown-drain-timeout", "2") as gateway:
        _, page = await open_page(browser, gateway.url)
        await page.click("#main-button")
        await wait_state(page, "recording")
        gateway.terminate()  # SIGTERM: calls are told, then given 2 s
        await shows(page, "gateway_draining", "reiniciar")
        await shows(page, "session_ended", "reconectar", "shutting down")
        assert await page.is_visible("#reconnect")

    async with GatewayProcess(fake_upstream) as gateway:
        _, page = await open_page(browser, gateway.url, PHONE)
        await page.tap("#main-button")
        await wait_state(page, "recording")
        gateway.kill()  # SIGKILL: no goodbye, packets just stop
        await page.wait_for_selector('#messages .message[data-code="connection_unstable"]', timeout=15_000)
        # The module tries to resume the call for its resume window (25 s), then gives up.
        await shows(page, "connection_lost", "Verifique sua rede", timeout=40)
        assert await page.is_visible("#reconnect")
        await screenshot(page, "phone-error-connection_lost")
