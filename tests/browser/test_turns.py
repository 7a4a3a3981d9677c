"""A person using the page, through the gateway and its default upstream: the offline engine.

Questions are real pt-BR recordings (tests/data), spoken into Chromium's microphone; answers are
the engine's real speech, played by Chromium from the gateway's WebRTC track.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from playwright.async_api import Page

from tests.conftest import GatewayFactory, RunningGateway

from .conftest import (
    DESKTOP,
    DEVICES,
    PHONE,
    WEB,
    axe_violations,
    device_name,
    inbound_audio_energy,
    open_page,
    record_states,
    say,
    screenshot,
    seen_states,
    server_events,
    speech_wav,
    state_of,
    wait_state,
)

pytestmark = pytest.mark.browser
ENGINE_TIMEOUT = 90  # s: a shared 2-core machine may be slow to transcribe, think and speak


@pytest.fixture
async def engine_gateway(make_gateway: GatewayFactory, engine_url: str) -> RunningGateway:
    """The gateway as `scripts/run` starts it without an OpenAI key: upstream "auto" → local engine."""
    return await make_gateway(upstream="auto", openai_api_key=None, engine_port=urlsplit(engine_url).port,
                              web_root=WEB)


async def turn_text(page: Page, role: str, index: int = 0) -> str:
    return (await page.locator(f".turn.{role} .text").nth(index).text_content() or "").strip()


async def wait_reply_heard(page: Page) -> None:
    await page.wait_for_function("document.querySelector('.turn.assistant .text')?.textContent.trim().length > 0",
                                 timeout=ENGINE_TIMEOUT * 1000)


@pytest.mark.parametrize("device", DEVICES)
async def test_a_spoken_question_gets_a_spoken_answer(engine_gateway: RunningGateway, launch, tmp_path: Path,
                                                      device: dict[str, Any]) -> None:
    name = device_name(device)
    browser = await launch(speech_wav(tmp_path / "question.wav", "pt_br_capital_brasil", lead_s=2.5, tail_s=40))
    # The phone asks for reduced motion: the recording border must not pulse there.
    motion = "reduce" if device is PHONE else "no-preference"
    _, page = await open_page(browser, engine_gateway.url, device, reduced_motion=motion)
    assert await axe_violations(page) == []
    await screenshot(page, f"{name}-idle")
    await record_states(page)
    await (page.tap if device is PHONE else page.click)("#main-button")
    await wait_state(page, "recording")
    animation = await page.eval_on_selector("#status", "e => getComputedStyle(e).animationName")
    assert animation == ("none" if device is PHONE else "pulse")
    assert await page.get_attribute("#main-button", "data-action") == "stop"
    await screenshot(page, f"{name}-recording")
    await wait_state(page, "listening")
    await screenshot(page, f"{name}-listening")
    await wait_state(page, "playing", timeout=ENGINE_TIMEOUT)
    assert await page.get_attribute("#main-button", "data-action") == "interrupt"
    question = await turn_text(page, "user")
    assert "capital" in question.lower() and "brasil" in question.lower(), question
    await wait_reply_heard(page)
    await screenshot(page, f"{name}-playing")
    await wait_state(page, "recording", timeout=ENGINE_TIMEOUT)
    answer = await turn_text(page, "assistant")
    assert "brasília" in answer.lower(), answer
    assert not await page.locator(".turn.streaming").count()
    assert await inbound_audio_energy(page) > 0.01  # the answer was played, not silence
    expected = ["idle", "connecting", "recording", "listening", "processing", "playing", "recording"]
    assert [s for s in await seen_states(page) if s in expected] == expected, await seen_states(page)
    # The user's turn is listed before the answer, although its transcript came later.
    assert await page.eval_on_selector_all(".turn", "ts => ts.map(t => t.classList[1])") == ["user", "assistant"]
    latency = await page.text_content("#latency-last")
    assert latency and latency.endswith(" ms") and 0 < int(latency.split()[0]) < ENGINE_TIMEOUT * 1000
    await page.click("summary")
    await screenshot(page, f"{name}-after-turn")
    assert await axe_violations(page) == []

    if device is PHONE:  # turned sideways and back mid-call: the call and the layout survive
        await page.set_viewport_size({"width": 740, "height": 375})
        await page.wait_for_timeout(300)
        assert await state_of(page) == "recording"
        assert await page.evaluate("document.documentElement.scrollWidth") <= 740
        box = await page.locator("#main-button").bounding_box()
        assert box and box["y"] + box["height"] <= 375, box  # the main control needs no scrolling
        await screenshot(page, "phone-landscape")
        await page.set_viewport_size(PHONE["viewport"])
        assert await page.evaluate("window.realtimePage.client.peerConnection.connectionState") == "connected"

    await (page.tap if device is PHONE else page.click)("#main-button")  # stop
    await wait_state(page, "idle")
    await engine_gateway_idle(engine_gateway)


async def engine_gateway_idle(gateway: RunningGateway) -> None:
    """Hanging up frees the call at the gateway (the DELETE arrived)."""
    async with aiohttp.ClientSession() as session:
        for _ in range(100):
            async with session.get(f"{gateway.url}/healthz") as response:
                if (await response.json())["calls"] == 0:
                    return
            await asyncio.sleep(0.1)
    raise AssertionError("the gateway still holds the call after the page hung up")


async def test_interrupting_with_the_button_and_by_speaking(engine_gateway: RunningGateway, launch) -> None:
    browser = await launch()
    _, page = await open_page(browser, engine_gateway.url, DESKTOP, mic=True)
    await page.click("#main-button")
    await wait_state(page, "recording")

    # 1. A long story, cut with the hand button after about two seconds of it.
    await say(page, "pt_br_historia")
    await wait_state(page, "playing", timeout=ENGINE_TIMEOUT)
    await page.wait_for_timeout(2000)
    assert await page.get_attribute("#main-button", "data-action") == "interrupt"
    await page.click("#main-button")
    await wait_state(page, "recording", timeout=5)
    cut = page.locator(".turn.assistant.interrupted")
    await cut.first.wait_for(timeout=10_000)
    assert "interrompido" in (await cut.first.text_content() or "")
    truncated = await server_events(page, "conversation.item.truncated")
    assert len(truncated) == 1 and 1000 < truncated[0]["audio_end_ms"] < 4000, truncated
    await page.wait_for_function("window.realtimePage.events.some(e => e.type === 'conversation.item.retrieved')")
    heard = (await server_events(page, "conversation.item.retrieved"))[0]["item"]["content"][0]["transcript"]
    full = "".join(e["delta"] for e in await server_events(page, "response.output_audio_transcript.delta"))
    shown = await turn_text(page, "assistant")
    assert shown == heard.strip() and len(shown) < len(full), (shown, full)
    await screenshot(page, "desktop-interrupted")
    assert not [e for e in await server_events(page, "error")], await server_events(page, "error")

    # 2. In a new call (a fresh conversation), the user talks over the story.
    await page.click("#main-button")
    await wait_state(page, "idle")
    await page.click("#main-button")
    await wait_state(page, "recording")
    await record_states(page)
    await say(page, "pt_br_historia")
    await wait_state(page, "playing", timeout=ENGINE_TIMEOUT)
    await page.wait_for_timeout(1500)
    await say(page, "pt_br_capital_brasil")
    await page.wait_for_function("document.querySelectorAll('.turn.assistant.interrupted').length === 2",
                                 timeout=10_000)
    # 3. …and the answer to what they said plays: the conversation goes on after a barge-in.
    await page.wait_for_function("document.querySelectorAll('.turn.user').length === 3", timeout=10_000)
    await wait_state(page, "playing", timeout=ENGINE_TIMEOUT)
    states = await seen_states(page)
    barge_in = states.index("interrupting")
    assert states[barge_in - 1] == "playing" and "listening" in states[barge_in:], states
    assert "capital" in (await turn_text(page, "user", 2)).lower()
    await wait_state(page, "recording", timeout=ENGINE_TIMEOUT)
    assert "brasília" in (await turn_text(page, "assistant", 2)).lower()
    assert not [e for e in await server_events(page, "error")]


async def test_keyboard_only(engine_gateway: RunningGateway, launch) -> None:
    browser = await launch()
    _, page = await open_page(browser, engine_gateway.url, DESKTOP, mic=True)
    await page.keyboard.press("Tab")  # the language selector, then the main button
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.id") == "main-button"
    outline = await page.eval_on_selector("#main-button", "e => getComputedStyle(e).outlineStyle")
    assert outline == "solid"  # the focus is visible
    await page.keyboard.press("Space")
    await wait_state(page, "recording")
    await say(page, "pt_br_historia")
    await wait_state(page, "playing", timeout=ENGINE_TIMEOUT)
    await page.keyboard.press("Escape")
    await wait_state(page, "recording", timeout=5)
    await page.locator(".turn.assistant.interrupted").wait_for(timeout=10_000)

    # A typed question, from the keyboard: Tab to the text field, type, Enter.
    for _ in range(5):
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement.id") == "text-input":
            break
    assert await page.evaluate("document.activeElement.id") == "text-input"
    await page.keyboard.type("Qual é a capital da França?")
    await page.keyboard.press("Enter")
    await page.wait_for_function("document.querySelectorAll('.turn.user').length === 2")
    await wait_state(page, "playing", timeout=ENGINE_TIMEOUT)
    await wait_state(page, "recording", timeout=ENGINE_TIMEOUT)
    assert "paris" in (await turn_text(page, "assistant", 1)).lower()
    for _ in range(5):
        await page.keyboard.press("Shift+Tab")
        if await page.evaluate("document.activeElement.id") == "main-button":
            break
    assert await page.get_attribute("#main-button", "aria-label") == "Encerrar conversa"
    await page.keyboard.press("Enter")
    await wait_state(page, "idle")
