"""The reference page in a real Chromium, through the real gateway (fake upstream standing in for OpenAI)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from ..conftest import GatewayFactory
from ..turn_server import turn_server  # noqa: F401
from ..fake_upstream import FakeRealtimeServer
from .conftest import (DESKTOP, PHONE, ROOT, axe_violations, inbound_audio_energy, launch, open_page,  # noqa: F401
                       record_states, screenshot, wait_state, write_mic_wav)

pytestmark = pytest.mark.browser
WEB = ROOT / "web"


async def page_gateway(make_gateway: GatewayFactory, **overrides):  # type: ignore[no-untyped-def]
    return await make_gateway(web_root=WEB, **overrides)


async def message_code(page) -> str:  # type: ignore[no-untyped-def]
    await page.wait_for_selector("#messages .message", timeout=20_000)
    return await page.get_attribute("#messages .message", "data-code")


@pytest.mark.parametrize("device,name", [(DESKTOP, "desktop"), (PHONE, "phone")])
async def test_a_whole_turn(make_gateway: GatewayFactory, fake_upstream: FakeRealtimeServer, launch,  # noqa: F811
                            tmp_path: Path, device: dict, name: str) -> None:
    fake_upstream.behaviour.reply_seconds = 3.0
    fake_upstream.behaviour.speed = 1.5
    gateway = await page_gateway(make_gateway)
    browser = await launch(write_mic_wav(tmp_path / "mic.wav", [(1.5, 1.4)], total=12.0))
    _, page = await open_page(browser, f"{gateway.url}/?processing=off", device)
    assert await axe_violations(page) == []
    await screenshot(page, f"{name}-idle")
    await record_states(page)
    if device is PHONE:
        await page.tap("#main-button")
    else:
        await page.click("#main-button")
    await wait_state(page, "recording")
    await screenshot(page, f"{name}-recording")
    await wait_state(page, "listening")
    await screenshot(page, f"{name}-listening")
    await wait_state(page, "playing")
    await screenshot(page, f"{name}-playing")
    assert await page.get_attribute("#main-button", "data-action") == "interrupt"
    user = page.locator(".turn.user .text").first
    assert (await user.text_content()) == fake_upstream.behaviour.user_transcript
    await wait_state(page, "recording", timeout=20)
    assistant = page.locator(".turn.assistant .text").first
    assert (await assistant.text_content()).strip() == fake_upstream.behaviour.reply_text
    assert await inbound_audio_energy(page) > 0
    states = await page.evaluate("window.seenStates")
    expected = ["idle", "connecting", "recording", "listening", "processing", "playing", "recording"]
    assert [s for s in states if s in expected] == expected, states
    assert (await page.text_content("#latency-last")).endswith("ms")
    await page.click("summary")
    await screenshot(page, f"{name}-after-turn")
    assert await axe_violations(page) == []
    await page.click("#main-button")  # stop
    await wait_state(page, "idle")


async def test_interrupt_with_the_button_and_by_speaking(make_gateway: GatewayFactory, fake_upstream: FakeRealtimeServer,
                                                         launch, tmp_path: Path) -> None:  # noqa: F811
    fake_upstream.behaviour.reply_seconds = 5.0
    fake_upstream.behaviour.speed = 1.2
    gateway = await page_gateway(make_gateway)
    # Question 1 at 1.5 s (its reply is cut with the button), question 2 at 6 s, and at 9.5 s the
    # user talks over the second reply.
    browser = await launch(write_mic_wav(tmp_path / "mic.wav", [(1.5, 1.2), (6.0, 1.0), (9.5, 0.8)], total=20.0))
    _, page = await open_page(browser, f"{gateway.url}/?processing=off")
    await page.click("#main-button")
    await wait_state(page, "playing")
    await page.wait_for_timeout(1000)
    await page.click("#main-button")  # the hand: interrupt
    await wait_state(page, "recording", timeout=5)
    interrupted = page.locator(".turn.assistant.interrupted")
    await interrupted.first.wait_for(timeout=5000)
    await screenshot(page, "desktop-interrupted")
    await record_states(page)
    await wait_state(page, "playing", timeout=20)  # the answer to question 2…
    await page.wait_for_function("window.seenStates.slice(window.seenStates.indexOf('playing'))"
                                 ".includes('interrupting')", timeout=20_000)  # …cut by the user's voice
    await wait_state(page, "playing", timeout=20)  # and the answer after that still plays
    await page.wait_for_function("document.querySelectorAll('.turn.assistant.interrupted').length === 2",
                                 timeout=5000)
    session = fake_upstream.sessions[-1]
    cut = session.events_of("conversation.item.truncate") + session.events_of("conversation.item.delete")
    assert len(cut) == 2


async def test_keyboard_only(make_gateway: GatewayFactory, fake_upstream: FakeRealtimeServer, launch,  # noqa: F811
                             tmp_path: Path) -> None:
    fake_upstream.behaviour.reply_seconds = 8.0
    fake_upstream.behaviour.speed = 1.2
    gateway = await page_gateway(make_gateway)
    browser = await launch(write_mic_wav(tmp_path / "mic.wav", [(1.5, 1.2)], total=15.0))
    _, page = await open_page(browser, f"{gateway.url}/?processing=off")
    await page.keyboard.press("Tab")  # the language selector, then the main button
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.id") == "main-button"
    await page.keyboard.press("Space")
    await wait_state(page, "playing")
    await page.keyboard.press("Escape")
    await wait_state(page, "recording", timeout=5)
    await page.keyboard.press("Enter")  # the focused button now says "stop"
    await wait_state(page, "idle")


async def test_failure_messages(make_gateway: GatewayFactory, fake_upstream: FakeRealtimeServer, launch,  # noqa: F811
                                tmp_path: Path) -> None:
    gateway = await page_gateway(make_gateway)
    mic = write_mic_wav(tmp_path / "mic.wav", [(1.5, 1.0)], total=6.0)

    # Microphone permission denied.
    browser = await launch(mic, extra_flags=["--deny-permission-prompts"], fake_ui=False)
    _, page = await open_page(browser, gateway.url, permissions=[])
    await page.click("#main-button")
    assert await message_code(page) == "mic_denied"
    await screenshot(page, "desktop-error-mic-denied")
    assert "microfone" in (await page.text_content("#messages")).lower()

    # A forged client secret.
    browser = await launch(mic)
    _, page = await open_page(browser, gateway.url)
    await page.route("**/v1/realtime/client_secrets", lambda route: route.fulfill(
        status=200, content_type="application/json", body='{"value": "ek_forged", "expires_at": 0, "ice_servers": []}'))
    await page.click("#main-button")
    assert await message_code(page) == "token_rejected"

    # The server ends the session (a fatal upstream error).
    fake_upstream.behaviour.fatal_error_after_turns = 0
    _, page = await open_page(browser, f"{gateway.url}/?processing=off")
    await page.click("#main-button")
    await page.wait_for_selector('#messages .message[data-code="session_ended"]', timeout=20_000)
    assert await page.is_visible("#reconnect")
    assert "quota" in await page.text_content("#messages")  # the server's reason is shown too
    await screenshot(page, "desktop-error-session-ended")

    # Page not on https (and not localhost): the mic is unavailable.
    host_ip = _non_loopback_ip()
    if host_ip:
        insecure = await page_gateway(make_gateway, host="0.0.0.0")
        port = insecure.url.rsplit(":", 1)[1]
        _, page = await open_page(browser, f"http://{host_ip}:{port}/", permissions=[])
        await page.click("#main-button")
        assert await message_code(page) == "insecure_context"

    # The gateway goes away after the page loaded.
    _, page = await open_page(browser, gateway.url)
    await gateway.stop()
    await page.click("#main-button")
    assert await message_code(page) == "gateway_unreachable"
    await screenshot(page, "desktop-error-unreachable")


def _non_loopback_ip() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent; picks the outbound interface
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


async def test_english_is_selectable(make_gateway: GatewayFactory, launch) -> None:  # noqa: F811
    gateway = await page_gateway(make_gateway)
    browser = await launch()
    _, page = await open_page(browser, gateway.url)
    assert await page.text_content("h1") == "Assistente de Voz"
    await page.select_option("#language", "en")
    assert await page.text_content("h1") == "Voice Assistant"
    assert await page.get_attribute("html", "lang") == "en"
    assert await page.get_attribute("#main-button", "aria-label") == "Start conversation"
    assert await axe_violations(page) == []


async def test_a_spoken_question_to_the_offline_engine(engine_url: str, launch, tmp_path: Path) -> None:  # noqa: F811
    """The default upstream: a pt-BR question spoken into Chromium's mic gets a spoken answer."""
    import numpy as np

    from gateway.resample import Upsampler

    from ..audio_tools import DATA, read_wav
    from ..conftest import gateway_config, start_gateway
    gateway, runner = await start_gateway(gateway_config(upstream_url=engine_url, openai_api_key=None, web_root=WEB))
    try:
        speech, _ = read_wav(DATA / "pt_br_capital_brasil.wav")
        pcm = np.concatenate((np.zeros(48000 * 2, np.int16), Upsampler().process(speech), np.zeros(48000 * 10, np.int16)))
        mic = tmp_path / "question.wav"
        import wave
        with wave.open(str(mic), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(48000)
            out.writeframes(pcm.tobytes())
        browser = await launch(mic)
        _, page = await open_page(browser, gateway.url)
        await page.click("#main-button")
        user = page.locator(".turn.user .text").first
        await user.wait_for(timeout=30_000)
        await page.wait_for_function("document.querySelector('.turn.user .text').textContent.length > 5",
                                     timeout=30_000)
        assert "capital" in (await user.text_content()).lower()
        await wait_state(page, "playing", timeout=60)
        await wait_state(page, "recording", timeout=60)
        assert (await page.locator(".turn.assistant .text").first.text_content()).strip()
        assert await inbound_audio_energy(page) > 0
        await screenshot(page, "desktop-offline-engine-turn")
    finally:
        await runner.cleanup()


async def test_relay_only_through_a_real_coturn(make_gateway: GatewayFactory, fake_upstream: FakeRealtimeServer,
                                                turn_server, launch, tmp_path: Path) -> None:  # noqa: F811
    from gateway.config import IceServer

    fake_upstream.behaviour.reply_seconds = 2.0
    gateway = await page_gateway(make_gateway, ice_servers=(IceServer(turn_server.url),),
                                 turn_secret=turn_server.secret, ice_transport_policy="relay")
    browser = await launch(write_mic_wav(tmp_path / "mic.wav", [(1.5, 1.2)], total=10.0))
    _, page = await open_page(browser, f"{gateway.url}/?processing=off&relay=1")
    await page.click("#main-button")
    await wait_state(page, "playing", timeout=30)
    await wait_state(page, "recording", timeout=20)
    assert await inbound_audio_energy(page) > 0
    local_type = await page.evaluate("""async () => {
        const stats = await window.realtimePage.client._pc.getStats();
        let pair = null;
        stats.forEach((s) => { if (s.type === 'transport') pair = stats.get(s.selectedCandidatePairId); });
        return stats.get(pair.localCandidateId).candidateType;
    }""")
    assert local_type == "relay"
    assert turn_server.log_text().count("ALLOCATE processed, success") >= 2
