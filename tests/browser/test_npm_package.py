"""web/ as the npm package `realtime-gateway-client`: packed with `npm pack`, installed from the
tarball into a separate app (tests/browser/npm_app), bundled by esbuild, typechecked by tsc
against the package's declarations, and used for a real call in Chromium against the gateway,
the app on its own origin. npm installs go through a cache under artifacts/ (gitignored), so a
warm run needs no network.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import GatewayFactory
from tests.fake_upstream import FakeRealtimeServer

from .conftest import ROOT, WEB, open_page, screenshot, until, write_mic_wav

pytestmark = pytest.mark.browser

NPM_APP = Path(__file__).parent / "npm_app"
NPM_CACHE = ROOT / "artifacts" / "npm-cache"
PACKAGE = json.loads((WEB / "package.json").read_text())["name"]
PAGE_ONLY = {"app.js", "index.html", "styles.css", "strings.js", "transcript-view.js"}


def npm(cwd: Path, *args: str) -> str:
    if shutil.which("npm") is None:
        pytest.fail("npm is not installed: run scripts/setup_browser.sh (apt-get install nodejs npm)")
    env = {**os.environ, "npm_config_cache": str(NPM_CACHE), "npm_config_update_notifier": "false"}
    result = subprocess.run(["npm", *args, "--no-audit", "--no-fund", "--loglevel=error"], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"npm {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`npm pack` of web/: {"tarball": path, "files": [paths inside the package]}."""
    out = tmp_path_factory.mktemp("pack")
    (info,) = json.loads(npm(WEB, "pack", "--json", "--pack-destination", str(out)))
    return {"tarball": out / info["filename"], "files": sorted(f["path"] for f in info["files"])}


@pytest.fixture(scope="module")
def app(packed: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The consumer app in a temp dir, the tarball installed (with esbuild and tsc), bundled."""
    root = tmp_path_factory.mktemp("npm") / "app"
    shutil.copytree(NPM_APP, root, ignore=shutil.ignore_patterns("node_modules", "dist", "package-lock.json"))
    npm(root, "install", "--prefer-offline", str(packed["tarball"]))
    npm(root, "run", "build")
    assert (root / "dist" / "main.js").is_file()
    return root


def test_the_tarball_holds_the_client_and_its_declarations_only(packed: dict[str, Any]) -> None:
    files = set(packed["files"])
    assert f'from "{PACKAGE}"' in (NPM_APP / "main.js").read_text()  # the app imports what web/ publishes
    assert {"package.json", "README.md", "realtime-client.js", "realtime-client.d.ts", "call-connection.js",
            "conversation-tracker.js", "conversation-tracker.d.ts", "latency-meter.js", "latency-meter.d.ts"} <= files
    assert not files & PAGE_ONLY, "the reference page's own files are not part of the package"
    for name in files:  # every relative import (code or types) is shipped too
        if name.endswith((".js", ".ts")):
            for target in re.findall(r'from "\./([^"]+)"', (WEB / name).read_text()):
                assert target in files or target.replace(".js", ".d.ts") in files, f"{name} imports {target}"
    exports = json.loads((WEB / "package.json").read_text())["exports"]
    for entry in exports.values():
        for target in ([entry] if isinstance(entry, str) else entry.values()):
            assert target.removeprefix("./") in files, target


def test_the_declarations_match_the_code_and_typecheck(app: Path) -> None:
    """Every event the client dispatches and every error code are declared; an app's use of the
    API passes `tsc --strict`, and its deliberate mistakes (@ts-expect-error) are caught."""
    client_js, tracker_js = (WEB / "realtime-client.js").read_text(), (WEB / "conversation-tracker.js").read_text()
    client_dts, tracker_dts = (WEB / "realtime-client.d.ts").read_text(), (WEB / "conversation-tracker.d.ts").read_text()
    tracker_events = set(re.findall(r'_emit\("(\w+)"', tracker_js))
    client_events = set(re.findall(r'_emit\("(\w+)"', client_js)) | tracker_events - {"turnaudio"}
    assert declared_keys(tracker_dts, "ConversationTrackerEvents") == tracker_events
    assert declared_keys(client_dts, "RealtimeClientEventMap") == client_events
    assert quoted(between(client_js, "export const ERROR_CODES", "]);")) == \
        quoted(between(client_dts, "export declare const ERROR_CODES", "];"))
    npm(app, "run", "check")


async def test_a_bundled_app_calls_the_gateway(make_gateway: GatewayFactory, fake_upstream: FakeRealtimeServer,
                                               static_site, launch, app: Path,
                                               tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    site = await static_site(app)
    gateway = await make_gateway(allowed_origins=(site,))  # serves no web/: the bundle is all the app has
    assert site.rsplit(":", 1)[1] != gateway.url.rsplit(":", 1)[1]  # two origins
    browser = await launch(write_mic_wav(tmp_path / "mic.wav", [(1.5, 1.2)], total=15.0))
    _, page = await open_page(browser, f"{site}/?gateway={gateway.url}")
    await page.click("#talk")
    log = "document.querySelector('#log').textContent"
    await page.wait_for_function(f"{log}.includes('state: playing')", timeout=20_000)
    await page.wait_for_function(f"{log}.split('state: recording\\n').length > 2", timeout=20_000)
    text = await page.locator("#log").text_content() or ""
    assert "call: connected" in text
    assert f"user: {fake_upstream.behaviour.user_transcript}" in text
    assert f"assistant: {fake_upstream.behaviour.reply_text}" in text
    assert "latency:" in text and "error:" not in text, text
    energy = await page.evaluate("""async () => {
        let energy = 0;
        (await window.client.peerConnection.getStats()).forEach((s) => {
            if (s.type === 'inbound-rtp' && s.kind === 'audio') energy += s.totalAudioEnergy || 0;
        });
        return energy;
    }""")
    assert energy > 0, "the assistant's voice was played"
    assert (await page.evaluate("window.client.callUrl")).startswith(f"{gateway.url}/v1/realtime/calls/")
    scripts = await page.evaluate("""() => performance.getEntriesByType('resource')
        .filter((e) => e.initiatorType === 'script').map((e) => e.name)""")
    assert scripts == [f"{site}/dist/main.js"], scripts  # the bundle alone: nothing from the gateway
    await page.click("#talk")  # hang up
    await until(lambda: len(gateway.state.calls) == 0, timeout=5)
    await page.wait_for_function(f"{log}.includes('call: closed')", timeout=5_000)
    await screenshot(page, "desktop-npm-app")


def between(text: str, start: str, end: str) -> str:
    head = text.index(start)
    return text[head:text.index(end, head)]


def quoted(text: str) -> list[str]:
    return re.findall(r'"(\w+)"', text)


def declared_keys(dts: str, interface: str) -> set[str]:
    body = between(dts, f"interface {interface} {{", "\n}")
    return set(re.findall(r"^\s+(\w+):", body, re.M))
