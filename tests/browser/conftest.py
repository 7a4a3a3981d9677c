"""Real headless Chromium (Debian's) driven by Playwright: launch, pages, microphones, audits.

Two microphones: Chromium's own fake capture device playing a WAV file from the start of the
call (``launch(mic=...)``, as a person who talks right away), and a page-side microphone the test
speaks into when it chooses (``open_page(..., mic=True)`` then ``say(page, wav)``), for turns that
must land at a given moment (e.g. over the assistant's reply). Both reach the gateway through
the browser's real WebRTC stack (Opus, RTP, ICE).

Screenshots go to ``artifacts/screenshots/`` (gitignored), named ``<device>-<state>.png``.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import wave
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from tests.audio_tools import DATA, read_wav, voiced

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
AXE = Path(__file__).parent / "node_modules" / "axe-core" / "axe.min.js"
PAGE_MIC = Path(__file__).parent / "page_mic.js"
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
DEVICES = [pytest.param(DESKTOP, id="desktop"), pytest.param(PHONE, id="phone")]

pytestmark = pytest.mark.browser


def device_name(device: dict[str, Any]) -> str:
    return "phone" if device.get("is_mobile") else "desktop"


def write_wav(path: Path, pcm: np.ndarray, rate: int = 48000) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.astype(np.int16).tobytes())
    return path


def write_mic_wav(path: Path, segments: list[tuple[float, float]], total: float, rate: int = 48000) -> Path:
    """A WAV of silence with voiced speech in ``segments`` [(start s, length s)]: the fake mic."""
    pcm = np.zeros(int(total * rate), np.int16)
    for index, (start, length) in enumerate(segments):
        speech = voiced(length, 170.0, rate, level=12000, seed=index)
        pcm[int(start * rate):int(start * rate) + len(speech)] = speech
    return write_wav(path, pcm, rate)


def speech_wav(path: Path, name: str, lead_s: float = 1.5, tail_s: float = 12.0) -> Path:
    """A pt-BR recording from tests/data with silence around it, for Chromium's fake mic."""
    speech, rate = read_wav(DATA / f"{name}.wav")
    silence = np.zeros(int(rate * lead_s), np.int16), np.zeros(int(rate * tail_s), np.int16)
    return write_wav(path, np.concatenate((silence[0], speech, silence[1])), rate)


@pytest.fixture
async def launch() -> AsyncIterator[Callable[..., Any]]:
    """launch(mic=wav path or None, extra_flags=[...], fake_ui=True) → a Browser; closed after the test."""
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is not installed: run scripts/setup_browser.sh (apt-get install chromium)")
    async with async_playwright() as playwright:
        browsers: list[Browser] = []

        async def _launch(mic: Path | None = None, extra_flags: list[str] | None = None,
                          fake_ui: bool = True, fake_device: bool = True) -> Browser:
            flags = [f for f in BASE_FLAGS
                     if (fake_ui or f != "--use-fake-ui-for-media-stream")
                     and (fake_device or f != "--use-fake-device-for-media-stream")]
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
                    permissions: list[str] | None = ("microphone",), mic: bool = False,
                    reduced_motion: str = "no-preference") -> tuple[BrowserContext, Page]:
    """A fresh context (no stored language) on ``url``; ``mic=True`` installs the page-side mic."""
    context = await browser.new_context(**device, permissions=list(permissions or []), reduced_motion=reduced_motion)
    page = await context.new_page()
    page.on("console", lambda message: print(f"[browser {message.type}] {message.text}"))
    page.on("pageerror", lambda error: print(f"[browser pageerror] {error}"))
    if mic:
        await page.add_init_script(path=str(PAGE_MIC))
        await page.route("**/__test_audio/*", lambda route: route.fulfill(
            path=str(DATA / route.request.url.rsplit("/", 1)[1]), content_type="audio/wav"))
    await page.goto(url)
    return context, page


async def say(page: Page, name: str) -> float:
    """Speak tests/data/<name>.wav into the page-side mic; returns when it ends (page clock, ms)."""
    return await page.evaluate("(url) => window.testMic.say(url)", f"/__test_audio/{name}.wav")


async def axe_violations(page: Page) -> list[dict[str, Any]]:
    if not await page.evaluate("typeof axe !== 'undefined'"):
        await page.add_script_tag(path=str(AXE))
    result = await page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [{"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]]}
            for v in result["violations"]]


async def screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True, animations="disabled")
    return path


async def wait_state(page: Page, state: str, timeout: float = 20.0) -> None:
    await page.wait_for_function(f"document.getElementById('status').dataset.state === '{state}'",
                                 timeout=timeout * 1000)


async def state_of(page: Page) -> str:
    return await page.get_attribute("#status", "data-state") or ""


async def inbound_audio_energy(page: Page) -> float:
    """Audio energy Chromium has played out from the gateway (0 for silence or a muted element)."""
    return await page.evaluate("""async () => {
        const stats = await window.realtimePage.client.peerConnection.getStats();
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


async def seen_states(page: Page) -> list[str]:
    return await page.evaluate("window.seenStates")


async def message_code(page: Page, timeout: float = 20.0) -> str:
    await page.wait_for_selector("#messages .message", timeout=timeout * 1000)
    return await page.get_attribute("#messages .message", "data-code") or ""


async def server_events(page: Page, kind: str) -> list[dict[str, Any]]:
    return await page.evaluate("(kind) => window.realtimePage.events.filter((e) => e.type === kind)", kind)


@pytest.fixture
async def static_site() -> AsyncIterator[Callable[..., Any]]:
    """static_site(root=web/) → URL of a plain static server: the page without any gateway."""
    runners: list[web.AppRunner] = []

    async def serve(root: Path = WEB) -> str:
        app = web.Application()

        async def index(_: web.Request) -> web.FileResponse:
            return web.FileResponse(root / "index.html")

        app.router.add_get("/", index)
        app.router.add_static("/", root)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    yield serve
    for runner in runners:
        await runner.cleanup()


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def start_call(page: Page) -> str:
    """Click the main button and wait for the call to run; returns the gateway's SDP answer."""
    async with page.expect_response(lambda r: r.url.endswith("/v1/realtime/calls") and r.status == 201) as created:
        await page.click("#main-button")
    answer = await (await created.value).text()
    await wait_state(page, "recording")
    return answer


def answer_ports(sdp: str) -> set[int]:
    """The gateway's media ports: the port of every UDP candidate in its SDP answer."""
    return {int(m.group(1)) for m in re.finditer(r"^a=candidate:\S+ \d+ udp \d+ \S+ (\d+) ", sdp, re.M | re.I)}


@contextmanager
def dropped_udp(ports: set[int], percent: float = 100.0, inbound_only: bool = False) -> Iterator[None]:
    """nftables drops ``percent`` of the UDP packets to (and unless ``inbound_only``, from) ``ports``
    on this host: a real outage or a lossy path between Chromium and the gateway. Root only."""
    if os.geteuid() != 0 or shutil.which("nft") is None:
        pytest.fail("this test needs root and nft: run scripts/setup_net.sh as root")
    table = "inet browser_test_drops"
    listed = ", ".join(str(p) for p in sorted(ports))
    chance = f"numgen random mod 10000 < {round(percent * 100)} " if percent < 100 else ""
    rules = [f"add rule {table} input udp dport {{ {listed} }} {chance}counter drop"]
    if not inbound_only:
        rules.append(f"add rule {table} input udp sport {{ {listed} }} {chance}counter drop")
    script = (f"add table {table}\n"
              f"add chain {table} input {{ type filter hook input priority -10 ; policy accept ; }}\n"
              + "\n".join(rules) + "\n")
    subprocess.run(["nft", "-f", "-"], input=script, text=True, check=True)
    try:
        yield
    finally:
        subprocess.run(["nft", "delete", "table", *table.split()], check=False)
