"""What the page shows besides words: live audio levels and the per-turn latency chart.

The microphone is Chromium's fake capture device playing a pt-BR recording from tests/data with
silence around it (the recordings themselves are speech from the first to the last frame); the
assistant is the fake upstream's voiced reply, played by Chromium from the gateway's WebRTC
track. The page is sampled every 100 ms as a screen reader reads it (the meters' aria-valuenow
and aria-valuetext) and as it is drawn (the bar's length). Screenshots:
artifacts/screenshots/<device>-meters-*.png and desktop-latency-chart.png.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from playwright.async_api import Page

from tests.audio_tools import DATA, read_wav
from tests.conftest import GatewayFactory
from tests.fake_upstream import FakeRealtimeServer

from .conftest import (
    DESKTOP,
    DEVICES,
    PHONE,
    SCREENSHOTS,
    WEB,
    axe_violations,
    device_name,
    open_page,
    screenshot,
    speech_wav,
    wait_state,
    write_mic_wav,
    write_wav,
)

pytestmark = pytest.mark.browser
MOVING = 40   # aria-valuenow (0–100, -60..0 dBFS) a voice reaches: the recordings sit around -20 dBFS
RESTING = 5   # …and what silence shows
SETTLE_MS = 700  # meters are read over 500 ms windows: samples this close to a change of phase are left out

SAMPLER = """() => {
    const read = (id) => {
        const bar = document.querySelector(`#${id} [role=meter]`);
        const fill = document.querySelector(`#${id} .level-fill`);
        return {value: Number(bar.getAttribute('aria-valuenow')), word: bar.getAttribute('aria-valuetext'),
                drawn: fill.offsetWidth ? fill.getBoundingClientRect().width / fill.offsetWidth : 0};
    };
    window.levelSamples = [];
    setInterval(() => window.levelSamples.push({
        at: performance.now(), state: document.getElementById('status').dataset.state,
        shown: !document.getElementById('levels').hidden, hint: document.getElementById('mic-hint').textContent,
        mic: read('mic-level'), assistant: read('assistant-level')}), 100);
}"""


async def start_sampling(page: Page) -> None:
    await page.evaluate(SAMPLER)


async def samples(page: Page) -> list[dict[str, Any]]:
    return await page.evaluate("window.levelSamples")


def during(taken: list[dict[str, Any]], state: str, occurrence: int = 0) -> list[dict[str, Any]]:
    """The samples of the ``occurrence``-th stretch of ``state``, without its first and last SETTLE_MS."""
    runs: list[list[dict[str, Any]]] = []
    for sample in taken:
        if runs and runs[-1][0]["state"] == sample["state"]:
            runs[-1].append(sample)
        else:
            runs.append([sample])
    run = [r for r in runs if r[0]["state"] == state][occurrence]
    return [s for s in run if run[0]["at"] + SETTLE_MS <= s["at"] <= run[-1]["at"] - SETTLE_MS]


async def closeup(page: Page, selector: str, name: str) -> None:
    """A screenshot of the page and one of ``selector`` alone (<name>-closeup.png)."""
    await screenshot(page, name)
    await page.locator(selector).screenshot(path=str(SCREENSHOTS / f"{name}-closeup.png"), animations="disabled")


def peak(taken: list[dict[str, Any]], meter: str, key: str = "value") -> float:
    assert taken, "no samples in that stretch"
    return max(s[meter][key] for s in taken)


@pytest.mark.parametrize("device", DEVICES)
async def test_the_meters_follow_both_voices(make_gateway: GatewayFactory, fake_upstream: FakeRealtimeServer,
                                             launch, tmp_path: Path, device: dict[str, Any]) -> None:
    name = device_name(device)
    fake_upstream.behaviour.reply_seconds = 3.0
    gateway = await make_gateway(web_root=WEB)
    # 3 s of silence, the question (1.9 s of speech), then silence for the rest of the call.
    browser = await launch(speech_wav(tmp_path / "question.wav", "pt_br_capital_brasil", lead_s=3.0, tail_s=25))
    reduced = device is PHONE  # the phone asks for reduced motion: the bars move in steps there
    _, page = await open_page(browser, gateway.url, device, reduced_motion="reduce" if reduced else "no-preference")
    assert await page.is_hidden("#levels")  # no call, no meters
    await start_sampling(page)
    await (page.tap if device is PHONE else page.click)("#main-button")
    await wait_state(page, "recording")
    assert await page.is_visible("#levels")
    assert await axe_violations(page) == []

    await page.wait_for_function("Number(document.querySelector('#mic-level [role=meter]')"
                                 f".getAttribute('aria-valuenow')) > {MOVING}", timeout=10_000)
    await closeup(page, "#status", f"{name}-meters-mic")
    await wait_state(page, "playing", timeout=15)
    await page.wait_for_function("Number(document.querySelector('#assistant-level [role=meter]')"
                                 f".getAttribute('aria-valuenow')) > {MOVING}", timeout=5_000)
    await closeup(page, "#status", f"{name}-meters-assistant")
    await wait_state(page, "recording", timeout=15)
    # The page says "recording" once the gateway has sent the answer's last frame; the browser plays
    # what it buffered a little longer. Within 2 s the assistant's meter is at rest, and stays there.
    await page.wait_for_function("Number(document.querySelector('#assistant-level [role=meter]')"
                                 f".getAttribute('aria-valuenow')) <= {RESTING}", timeout=2_000)
    rested = await page.evaluate("performance.now()")
    await page.wait_for_timeout(2000)
    taken = await samples(page)

    before = [s for s in during(taken, "recording", 0) if s["shown"]]
    spoken, answered = during(taken, "listening"), during(taken, "playing")
    after = [s for s in taken if s["at"] > rested]
    # The microphone: moves while the recording speaks, rests in the silence before and after it.
    assert peak(before, "mic") <= RESTING, before
    assert peak(spoken, "mic") >= MOVING and peak(spoken, "mic", "drawn") >= MOVING / 100, spoken
    assert {s["mic"]["word"] for s in spoken} >= {"captando som"}
    assert peak(answered, "mic") <= RESTING and peak(after, "mic") <= RESTING
    assert {s["mic"]["word"] for s in after} == {"silêncio"}
    # The assistant: still until its answer plays, moving while it does, still again after.
    assert peak(before + spoken, "assistant") <= RESTING
    assert peak(answered, "assistant") >= MOVING and peak(answered, "assistant", "drawn") >= MOVING / 100, answered
    assert {s["assistant"]["word"] for s in answered} >= {"falando"}
    assert peak(after, "assistant") <= RESTING and {s["assistant"]["word"] for s in after} == {"em silêncio"}
    # The microphone spoke within 5 s: no "is your microphone working?" hint.
    assert not any(s["hint"] for s in taken)
    # Reduced motion: the bar jumps between tenths twice a second instead of following the voice.
    drawn = [s[meter]["drawn"] for s in taken for meter in ("mic", "assistant")]
    off_steps = [d for d in drawn if abs(d * 10 - round(d * 10)) > 0.02]
    assert (not off_steps) if reduced else len(off_steps) > 5, off_steps[:10]

    # The chart in the details panel: one point for the one turn, its value the one listed.
    await page.click("summary")
    points = await page.eval_on_selector_all("#latency-chart circle.point", "cs => cs.map(c => Number(c.dataset.ms))")
    listed = await page.eval_on_selector_all("#latency-list li", "ls => ls.map(l => parseInt(l.textContent))")
    assert len(points) == 1 and points == listed, (points, listed)
    assert await page.text_content("#latency-chart-caption") == f"1 turno: {points[0]} ms."
    await screenshot(page, f"{name}-meters-after-turn")
    assert await axe_violations(page) == []

    await (page.tap if device is PHONE else page.click)("#main-button")  # hang up: the meters go
    await wait_state(page, "idle")
    assert await page.is_hidden("#levels")


async def test_the_latency_chart_has_a_point_per_turn(make_gateway: GatewayFactory, fake_upstream: FakeRealtimeServer,
                                                      launch, tmp_path: Path) -> None:
    fake_upstream.behaviour.reply_seconds = 1.5
    gateway = await make_gateway(web_root=WEB)
    questions = ["pt_br_capital_brasil", "pt_br_meu_nome_carlos", "pt_br_qual_meu_nome"]
    browser = await launch(conversation_wav(tmp_path / "three.wav", questions, lead_s=2.0, gap_s=6.0))
    _, page = await open_page(browser, gateway.url, DESKTOP)
    await page.click("summary")  # open from the start: the chart grows while the person watches
    assert await page.text_content("#latency-chart-caption") == "O gráfico aparece depois do primeiro turno."
    assert await page.locator("#latency-chart circle.point").count() == 0
    await page.click("#main-button")
    await wait_state(page, "recording")
    for turn in range(1, len(questions) + 1):
        await page.wait_for_function(f"document.querySelectorAll('#latency-list li').length === {turn}", timeout=20_000)
        assert await page.locator("#latency-chart circle.point").count() == turn
    await wait_state(page, "recording", timeout=15)
    points = await page.eval_on_selector_all("#latency-chart circle.point", "cs => cs.map(c => Number(c.dataset.ms))")
    listed = await page.eval_on_selector_all("#latency-list li", "ls => ls.map(l => parseInt(l.textContent))")
    assert points == listed and all(0 < ms < 5000 for ms in points), (points, listed)
    # The points run left to right in turn order, higher for a longer wait.
    xs = await page.eval_on_selector_all("#latency-chart circle.point", "cs => cs.map(c => Number(c.getAttribute('cx')))")
    ys = await page.eval_on_selector_all("#latency-chart circle.point", "cs => cs.map(c => Number(c.getAttribute('cy')))")
    assert xs == sorted(xs) and len(set(xs)) == 3
    assert [ms for _, ms in sorted(zip(ys, points, strict=True))] == sorted(points, reverse=True)
    average = round(sum(points) / len(points))
    assert await page.text_content("#latency-chart-caption") == (
        f"Últimos 3 turnos: de {min(points)} a {max(points)} ms; média de {average} ms (linha tracejada).")
    assert await page.locator("#latency-chart line.average").count() == 1
    await closeup(page, ".details", "desktop-latency-chart")
    await page.select_option("#language", "en")  # the chart speaks the page's language
    assert await page.text_content("#latency-chart-caption") == (
        f"Last 3 turns: {min(points)} to {max(points)} ms; average {average} ms (dashed line).")
    assert await page.locator("#latency-chart circle.point").count() == 3
    assert await axe_violations(page) == []


@pytest.mark.parametrize("device", DEVICES)
async def test_a_silent_microphone_gets_a_hint(make_gateway: GatewayFactory, launch, tmp_path: Path,
                                               device: dict[str, Any]) -> None:
    """A microphone that delivers nothing (switched off at the device, muted by the system): after
    5 s the page says so, in a live region, instead of waiting for a turn that never comes."""
    gateway = await make_gateway(web_root=WEB)
    browser = await launch(write_mic_wav(tmp_path / "silence.wav", [], total=30.0))
    _, page = await open_page(browser, gateway.url, device)
    await page.click("#main-button")
    await page.wait_for_function("window.realtimePage.client?.localStream")  # the microphone is open
    opened = await page.evaluate("performance.now()")
    await wait_state(page, "recording")
    assert await page.text_content("#mic-hint") == ""
    await page.wait_for_function("document.getElementById('mic-hint').textContent.length > 0", timeout=10_000)
    waited = await page.evaluate("performance.now()") - opened
    # 5 s of microphone time (a busy machine's skipped frames do not count, so it may come a little later)
    assert 4500 <= waited <= 9000, waited
    hint = await page.text_content("#mic-hint") or ""
    assert hint.startswith("Ainda não chega som do seu microfone"), hint
    assert await page.get_attribute("#mic-hint", "role") == "status"
    assert await page.get_attribute("#mic-level [role=meter]", "aria-valuetext") == "silêncio"
    await screenshot(page, f"{device_name(device)}-meters-silent-mic")
    assert await axe_violations(page) == []
    await page.select_option("#language", "en")
    assert (await page.text_content("#mic-hint") or "").startswith("No sound is reaching us from your microphone")
    await page.click("#mute-button")  # muted on purpose: the meter says so and the hint goes
    await page.wait_for_function("document.querySelector('#mic-level [role=meter]').getAttribute('aria-valuetext')"
                                 " === 'muted'", timeout=5_000)
    assert await page.text_content("#mic-hint") == ""


def conversation_wav(path: Path, names: list[str], lead_s: float, gap_s: float) -> Path:
    """Recordings from tests/data one after another, ``gap_s`` of silence after each (time for the answer)."""
    parts: list[np.ndarray] = []
    rate = 0
    for index, name in enumerate(names):
        speech, rate = read_wav(DATA / f"{name}.wav")
        silence = np.zeros(int(rate * (lead_s if index == 0 else 0)), np.int16)
        parts += [silence, speech, np.zeros(int(rate * gap_s), np.int16)]
    return write_wav(path, np.concatenate(parts + [np.zeros(rate * 10, np.int16)]), rate)
