"""The reference page against the default deployment: two worker processes, call after call.

Chromium pools its connections, so the page's client-secret mint, its offer and its hang-up land
on either worker; every one must work (same-origin requests are forwarded with their verified
identity, see gateway/server/client_identity.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fake_upstream import FakeRealtimeServer

from .conftest import open_page, wait_state, write_mic_wav
from .gateway_process import GatewayProcess

pytestmark = pytest.mark.browser


async def test_the_page_makes_call_after_call_on_two_workers(fake_upstream: FakeRealtimeServer, launch,
                                                             tmp_path: Path) -> None:
    browser = await launch(write_mic_wav(tmp_path / "mic.wav", [], total=120.0))
    async with GatewayProcess(fake_upstream, "--workers", "2") as gateway:
        context, page = await open_page(browser, gateway.url)
        errors: list[str] = []
        page.on("response", lambda r: errors.append(f"{r.request.method} {r.url} {r.status}")
                if "/v1/" in r.url and r.status >= 400 else None)
        for _ in range(4):
            await page.click("#main-button")
            await wait_state(page, "recording")
            await page.click("#main-button")  # hang up
            await wait_state(page, "idle")
        await context.close()
        assert not errors, errors
        assert len(fake_upstream.sessions) == 4  # four calls reached the upstream, on whichever worker
