"""Every conversation state, as the person sees it: colour, icon, words; desktop and phone.

Driven by real events through the gateway, with the fake upstream for exact timing. Two states
last only a moment (processing before the first audio, interrupting until the flush is
confirmed); the page is made to receive those confirmations late, as on a slow network, so they
stay on screen long enough to be checked. Screenshots: artifacts/screenshots/<device>-state-*.png.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, Route

from tests.conftest import GatewayFactory
from tests.fake_upstream import FakeRealtimeServer

from .conftest import DEVICES, PHONE, WEB, axe_violations, device_name, open_page, screenshot, wait_state, write_mic_wav

pytestmark = pytest.mark.browser
SLOW_EVENTS = Path(__file__).parent / "slow_events.js"

# state → (border colour, border style, main button action, words shown) — the seed's §3.2 cues:
# recording pulses red, detected speech is blue, the assistant answering is green.
LOOKS = {
    "connecting": ("rgb(31, 95, 191)", "dotted", "start", "Conectando"),
    "recording": ("rgb(198, 40, 40)", "solid", "stop", "Gravando"),
    "listening": ("rgb(31, 95, 191)", "solid", "stop", "Ouvindo"),
    "processing": ("rgb(31, 95, 191)", "dashed", "interrupt", "Processando"),
    "playing": ("rgb(27, 122, 58)", "solid", "interrupt", "Reproduzindo"),
    "interrupting": ("rgb(138, 90, 0)", "solid", "interrupt", "Interrompendo"),
    "idle": ("rgb(213, 217, 224)", "solid", "start", "Inativo"),
}
ICONS = {"start": "icon-mic", "stop": "icon-stop", "interrupt": "icon-hand"}


async def check_looks(page: Page, state: str, device: dict[str, Any]) -> None:
    colour, style, action, words = LOOKS[state]
    await wait_state(page, state, timeout=15)
    looks = await page.evaluate("""() => {
        const status = getComputedStyle(document.getElementById('status'));
        const icon = [...document.querySelectorAll('#main-button .icon')].find(i => getComputedStyle(i).display !== 'none');
        return {colour: status.borderTopColor, style: status.borderTopStyle, icon: icon?.classList[1],
                action: document.getElementById('main-button').dataset.action,
                words: document.getElementById('state-name').textContent};
    }""")
    assert looks == {"colour": colour, "style": style, "icon": ICONS[action], "action": action, "words": words}, state
    await screenshot(page, f"{device_name(device)}-state-{state}")


@pytest.mark.parametrize("device", DEVICES)
async def test_every_state_looks_as_the_spec_says(make_gateway: GatewayFactory, fake_upstream: FakeRealtimeServer,
                                                  launch, tmp_path: Path, device: dict[str, Any]) -> None:
    fake_upstream.behaviour.reply_seconds = 5.0
    fake_upstream.behaviour.speed = 1.0
    gateway = await make_gateway(web_root=WEB)
    # Two questions: at 3 s (its reply is photographed while processing, then playing), and at 13 s
    # (its reply is interrupted with the hand button).
    browser = await launch(write_mic_wav(tmp_path / "mic.wav", [(3.0, 1.2), (13.0, 1.2)], total=30.0))
    context, page = await open_page(browser, f"{gateway.url}/?processing=off", device)
    await context.add_init_script(path=str(SLOW_EVENTS))
    await page.reload()
    await check_looks(page, "idle", device)

    async def slow_call(route: Route) -> None:
        await asyncio.sleep(1.5)
        await route.continue_()

    await page.route("**/v1/realtime/calls", slow_call)
    await page.evaluate("window.eventDelays['output_audio_buffer.started'] = 1500")
    await (page.tap if device is PHONE else page.click)("#main-button")
    await check_looks(page, "connecting", device)
    assert await page.get_attribute("#main-button", "aria-disabled") == "true"
    await check_looks(page, "recording", device)
    assert await axe_violations(page) == []

    await check_looks(page, "listening", device)
    await check_looks(page, "processing", device)
    assert await page.is_visible("#end-button")  # hanging up stays one tap away
    await check_looks(page, "playing", device)
    assert await axe_violations(page) == []
    await wait_state(page, "recording", timeout=15)

    await page.click("#mute-button")  # muted: no pulse, and the hint says how to speak again
    assert await page.get_attribute("#mute-button", "aria-pressed") == "true"
    assert await page.eval_on_selector("#status", "e => getComputedStyle(e).animationName") == "none"
    assert await page.text_content("#state-name") == "Microfone silenciado"
    await screenshot(page, f"{device_name(device)}-state-muted")
    await page.click("#mute-button")
    assert await page.get_attribute("#status", "data-muted") == "false"

    await page.evaluate("window.eventDelays['output_audio_buffer.started'] = 0;"
                        "window.eventDelays['output_audio_buffer.cleared'] = 1500")
    await wait_state(page, "playing", timeout=20)
    await (page.tap if device is PHONE else page.click)("#main-button")
    await check_looks(page, "interrupting", device)
    await wait_state(page, "recording", timeout=5)
    await page.locator(".turn.assistant.interrupted").wait_for()
    await screenshot(page, f"{device_name(device)}-state-after-interrupt")
    await page.click("#main-button")
    await check_looks(page, "idle", device)
