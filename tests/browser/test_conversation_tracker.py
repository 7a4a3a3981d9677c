"""web/conversation-tracker.js in Chromium, fed the server event sequences a call produces.

What the person sees (state, transcript, where a cut reply stops) and what the client sends back
(cancels, clears) must follow from the events alone, including the orders a real server produces
that a naive client gets wrong.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from playwright.async_api import Page, async_playwright

from .conftest import BASE_FLAGS, CHROMIUM, WEB

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

RUN = """async (steps) => {
    const { ConversationTracker } = await import('/conversation-tracker.js');
    const emitted = [], sent = [];
    let clock = 0;
    const tracker = new ConversationTracker({
        emit: (type, detail) => emitted.push({ type, ...detail }),
        send: (event) => { sent.push(event); return true; },
        now: () => clock });
    tracker.start();
    for (const step of steps) {
        if (step.at !== undefined) clock = step.at;
        if (step.call) emitted.push({ type: 'returned', call: step.call, value: tracker[step.call]() });
        else if (step.type) tracker.handle(step);
    }
    return { emitted, sent, state: tracker.state };
}"""

SESSION = {"type": "session.created", "session": {"audio": {"input": {"turn_detection": {
    "type": "server_vad", "silence_duration_ms": 600, "interrupt_response": True, "create_response": True}}}}}


def user_turn(item: str = "item_u1", at: float = 1000) -> list[dict[str, Any]]:
    return [{"type": "input_audio_buffer.speech_started", "item_id": item, "at": at},
            {"type": "input_audio_buffer.speech_stopped", "item_id": item, "at": at + 2000},
            {"type": "input_audio_buffer.committed", "item_id": item}]


def reply(response: str = "resp_1", item: str = "item_a1", words: tuple[str, ...] = ("Olá!", "Tudo", "bem?"),
          done: bool = True) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = [
        {"type": "response.created", "response": {"id": response, "status": "in_progress"}},
        {"type": "response.output_item.added", "response_id": response, "item": {"id": item, "role": "assistant"}},
    ]
    steps += [{"type": "response.output_audio_transcript.delta", "response_id": response, "item_id": item,
               "delta": word + " "} for word in words]
    if done:
        steps += [{"type": "response.output_audio_transcript.done", "response_id": response, "item_id": item,
                   "transcript": " ".join(words)},
                  {"type": "response.done", "response": {"id": response, "status": "completed"}}]
    return steps


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def page() -> AsyncIterator[Page]:
    """One page for the whole module: the tracker is rebuilt for every sequence anyway."""
    app = web.Application()
    app.router.add_static("/", WEB)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=BASE_FLAGS)
        page = await browser.new_page()
        await page.goto(f"http://127.0.0.1:{runner.addresses[0][1]}/conversation-tracker.js")
        yield page
        await browser.close()
    await runner.cleanup()


async def run(page: Page, steps: list[dict[str, Any]]) -> dict[str, Any]:
    return await page.evaluate(RUN, steps)


def states(result: dict[str, Any]) -> list[str]:
    return [e["state"] for e in result["emitted"] if e["type"] == "conversationstate"]


def transcripts(result: dict[str, Any], role: str) -> list[dict[str, Any]]:
    return [e for e in result["emitted"] if e["type"] == "transcript" and e["role"] == role]


async def test_a_turn_goes_through_the_states_and_streams_the_reply(page: Page) -> None:
    result = await run(page, [SESSION, *user_turn(), {"type": "conversation.item.input_audio_transcription.completed",
                                                      "item_id": "item_u1", "transcript": "Qual é a capital?"},
                              *reply(), {"type": "output_audio_buffer.started", "response_id": "resp_1", "at": 3500},
                              {"type": "output_audio_buffer.stopped", "response_id": "resp_1", "at": 6000}])
    assert states(result) == ["recording", "listening", "processing", "playing", "recording"]
    user = transcripts(result, "user")
    assert user[0]["pending"] and user[0]["text"] == ""  # the turn shows up as soon as speech starts
    assert user[-1] == {**user[-1], "text": "Qual é a capital?", "final": True, "itemId": "item_u1"}
    assistant = transcripts(result, "assistant")
    assert [e["text"] for e in assistant] == ["Olá! ", "Olá! Tudo ", "Olá! Tudo bem? ", "Olá! Tudo bem?"]
    assert [e["final"] for e in assistant] == [False, False, False, True]
    # End of speech = speech_stopped minus the server's silence window (600 ms).
    audio = [e for e in result["emitted"] if e["type"] == "turnaudio"]
    assert audio == [{"type": "turnaudio", "speechEndedAt": 2400, "startedAt": 3500}]
    assert result["sent"] == []


async def test_speaking_over_the_reply_interrupts_and_cuts_it_at_what_was_heard(page: Page) -> None:
    words = tuple("Era uma vez um menino que morava numa casa muito grande perto do rio".split())
    result = await run(page, [SESSION, *user_turn(), *reply(words=words),
                              {"type": "output_audio_buffer.started", "response_id": "resp_1", "at": 3500},
                              {"type": "input_audio_buffer.speech_started", "item_id": "item_u2", "at": 4800},
                              {"type": "output_audio_buffer.cleared", "response_id": "resp_1"},
                              {"type": "conversation.item.truncated", "item_id": "item_a1", "content_index": 0,
                               "audio_end_ms": 1200}])
    # Still talking after the flush: "listening", not "recording".
    assert states(result)[-3:] == ["playing", "interrupting", "listening"]
    cut = transcripts(result, "assistant")[-1]
    assert cut["interrupted"] and cut["final"]
    # 1.2 s heard at ~14 characters a second: 17 characters, cut at the nearest word boundary.
    assert cut["text"] == "Era uma vez um…", cut["text"]
    retrieve = result["sent"][-1]
    assert retrieve["type"] == "conversation.item.retrieve" and retrieve["item_id"] == "item_a1"
    assert retrieve["event_id"].startswith("event_client_")
    # The server still knows what was heard (the local engine keeps it): that text wins.
    after = await run(page, [SESSION, *user_turn(), *reply(words=words),
                             {"type": "output_audio_buffer.started", "response_id": "resp_1"},
                             {"type": "output_audio_buffer.cleared", "response_id": "resp_1"},
                             {"type": "conversation.item.truncated", "item_id": "item_a1", "audio_end_ms": 1200},
                             {"type": "conversation.item.retrieved", "item": {
                                 "id": "item_a1", "content": [{"type": "output_audio", "transcript": "Era uma vez"}]}}])
    assert transcripts(after, "assistant")[-1]["text"] == "Era uma vez"


async def test_the_speaking_rate_is_learned_from_replies_played_to_the_end(page: Page) -> None:
    text = "a" * 20 + " " + "b" * 19  # 40 characters played in 2 s: 20 characters a second
    result = await run(page, [SESSION, *user_turn(), *reply(words=(text,)),
                              {"type": "output_audio_buffer.started", "response_id": "resp_1", "at": 10_000},
                              {"type": "output_audio_buffer.stopped", "response_id": "resp_1", "at": 12_000},
                              *user_turn("item_u2", at=13_000),
                              *reply("resp_2", "item_a2", words=("cccc " * 20,), done=False),
                              {"type": "output_audio_buffer.started", "response_id": "resp_2", "at": 16_000},
                              {"type": "conversation.item.truncated", "item_id": "item_a2", "audio_end_ms": 1000}])
    # (14 + 20) / 2 = 17 characters a second → 17 characters heard → the nearest word boundary.
    assert transcripts(result, "assistant")[-1]["text"] == "cccc cccc cccc cccc…"


async def test_interrupting_after_the_reply_was_generated_only_clears_the_audio(page: Page) -> None:
    """OpenAI generates faster than real time: response.done comes while the audio still plays.
    A response.cancel then would only earn an error ("no active response") on the user's screen."""
    result = await run(page, [SESSION, *user_turn(), *reply(),
                              {"type": "output_audio_buffer.started", "response_id": "resp_1"},
                              {"call": "interrupt"}])
    assert [e["type"] for e in result["sent"]] == ["output_audio_buffer.clear"]
    assert result["state"] == "interrupting"
    during = await run(page, [SESSION, *user_turn(), *reply(done=False),
                              {"type": "output_audio_buffer.started", "response_id": "resp_1"},
                              {"call": "interrupt"}])
    assert [e["type"] for e in during["sent"]] == ["response.cancel", "output_audio_buffer.clear"]


async def test_interrupting_before_the_answer_arrives_cancels_it_when_it_does(page: Page) -> None:
    result = await run(page, [SESSION, *user_turn(), {"call": "interrupt"},
                              {"type": "response.created", "response": {"id": "resp_1"}},
                              {"type": "response.done", "response": {"id": "resp_1", "status": "cancelled"}}])
    assert [e["type"] for e in result["sent"]] == ["response.cancel"]
    assert states(result)[-1] == "recording" and result["state"] == "recording"


async def test_a_reply_without_audio_does_not_leave_the_page_processing(page: Page) -> None:
    result = await run(page, [SESSION, *user_turn(), {"type": "response.created", "response": {"id": "resp_1"}},
                              {"type": "response.done", "response": {
                                  "id": "resp_1", "status": "failed", "status_details": {
                                      "type": "failed", "error": {"type": "server_error", "code": "upstream_lost"}}}}])
    assert result["state"] == "recording"
    errors = [e for e in result["emitted"] if e["type"] == "error"]
    assert errors == [{**errors[0], "code": "upstream_error", "serverCode": "upstream_lost", "fatal": False}]


async def test_errors_are_sorted_into_stable_codes(page: Page) -> None:
    result = await run(page, [
        SESSION,
        {"type": "error", "error": {"code": "response_cancel_not_active", "message": "no active response"}},
        {"type": "error", "error": {"code": "item_not_found", "event_id": "event_client_7", "message": "x"}},
        {"type": "error", "error": {"code": "upstream_reconnecting", "message": "lost; reconnecting"}},
        {"type": "error", "error": {"code": "gateway_shutting_down", "message": "draining"}},
        {"type": "error", "error": {"code": "insufficient_quota", "message": "You exceeded your current quota."}},
    ])
    errors = [(e["code"], e["serverCode"]) for e in result["emitted"] if e["type"] == "error"]
    assert errors == [("upstream_reconnecting", "upstream_reconnecting"), ("gateway_draining", "gateway_shutting_down"),
                      ("upstream_error", "insufficient_quota")]


async def test_a_noise_burst_too_short_to_commit_leaves_no_empty_turn(page: Page) -> None:
    result = await run(page, [SESSION, {"type": "input_audio_buffer.speech_started", "item_id": "item_n"},
                              {"type": "input_audio_buffer.speech_stopped", "item_id": "item_n"},
                              {"type": "error", "error": {"code": "input_audio_buffer_commit_empty",
                                                          "message": "buffer too small"}}])
    user = transcripts(result, "user")
    assert user[-1]["discarded"] and user[-1]["itemId"] == "item_n"
    assert not [e for e in result["emitted"] if e["type"] == "error"]


async def test_a_cut_never_splits_a_word(page: Page) -> None:
    cuts = await page.evaluate("""async () => {
        const { cutAtWord } = await import('/conversation-tracker.js');
        return [cutAtWord('Olá! Tudo bem?', 1), cutAtWord('Olá! Tudo bem?', 3), cutAtWord('Olá! Tudo bem?', 13),
                cutAtWord('Olá!', 9)];
    }""")
    assert cuts == ["", "Olá!…", "Olá! Tudo bem?", "Olá!"]


async def test_a_reply_deleted_after_a_barge_in_shows_nothing_as_heard(page: Page) -> None:
    result = await run(page, [SESSION, *user_turn(), *reply(done=False),
                              {"type": "input_audio_buffer.speech_started", "item_id": "item_u2"},
                              {"type": "conversation.item.deleted", "item_id": "item_a1"},
                              {"type": "conversation.item.deleted", "item_id": "item_u1"}])
    cut = transcripts(result, "assistant")[-1]
    assert cut["interrupted"] and cut["text"] == ""
    assert transcripts(result, "user")[-1]["itemId"] == "item_u2"  # user items are not "interrupted"
