"""Real headless Chromium (Debian's) driven by Playwright, with a WAV file as its microphone."""

from __future__ import annotations

import wave
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from ..audio_tools import voiced

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
AXE = Path(__file__).parent / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
BASE_FLAGS = [
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream", "--no-sandbox", "--disable-gpu",
    "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--allow-loopback-in-peer-connection", "--autoplay-policy=no-user-gesture-required",
]
PHONE = {"viewport": {"width": 375, "height": 740}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True,
         "user_agent": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
                       "Chrome/156.0 Mobile Safari/537.36"}
DESKTOP = {"viewport": {"width": 1280, "height": 860}}

pytestmark = pytest.mark.browser


def write_mic_wav(path: Path, segments: list[tuple[float, float]], total: float, rate: int = 48000) -> Path:
    """A WAV of silence with voiced speech in ``segments`` [(start s, length s)]: the fake mic."""
    pcm = np.zeros(int(total * rate), np.int16)
    for index, (start, length) in enumerate(segments):
        speech = voiced(length, 170.0, rate, level=12000, seed=index)
        pcm[int(start * rate):int(start * rate) + len(speech)] = speech
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())
    return path


@pytest.fixture
async def launch(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """launch(mic=wav path or None, extra_flags=[...]) → a Browser; closed after the test."""
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is not installed: run scripts/setup.sh test (apt-get install chromium)")
    async with async_playwright() as playwright:
        browsers: list[Browser] = []

        async def _launch(mic: Path | None = None, extra_flags: list[str] | None = None,
                          fake_ui: bool = True) -> Browser:
            flags = [f for f in BASE_FLAGS if fake_ui or f != "--use-fake-ui-for-media-stream"]
            if mic is not None:
                flags.append(f"--use-file-for-fake-audio-capture={mic}%noloop")
            browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                                       args=flags + (extra_flags or []))
            browsers.append(browser)
            return browser

        yield _launch
        for browser in browsers:
            await browser.close()


async def open_page(browser: Browser, url: str, device: dict[str, Any] = DESKTOP,
                    permissions: list[str] | None = ("microphone",)) -> tuple[BrowserContext, Page]:
    context = await browser.new_context(**device, permissions=list(permissions or []))
    page = await context.new_page()
    page.on("console", lambda message: print(f"[browser {message.type}] {message.text}"))
    await page.goto(url)
    return context, page


async def axe_violations(page: Page) -> list[dict[str, Any]]:
    await page.add_script_tag(path=str(AXE))
    result = await page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [{"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]]}
            for v in result["violations"]]


async def screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


async def wait_state(page: Page, state: str, timeout: float = 20.0) -> None:
    await page.wait_for_function(f"document.getElementById('status').dataset.state === '{state}'",
                                 timeout=timeout * 1000)


async def inbound_audio_energy(page: Page) -> float:
    return await page.evaluate("""async () => {
        const stats = await window.realtimePage.client._pc.getStats();
        let energy = 0;
        stats.forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'audio') energy += s.totalAudioEnergy || 0; });
        return energy;
    }""")


async def record_states(page: Page) -> None:
    """Keep every state the status area goes through in window.seenStates (in order)."""
    await page.evaluate("""() => {
        window.seenStates = [document.getElementById('status').dataset.state];
        new MutationObserver(() => {
            const state = document.getElementById('status').dataset.state;
            if (window.seenStates.at(-1) !== state) window.seenStates.push(state);
        }).observe(document.getElementById('status'), {attributes: true, attributeFilter: ['data-state']});
    }""")
