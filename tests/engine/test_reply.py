"""A reply's pipeline (LLM → parser → planner → TTS) with stand-in models: drafts, stops, calls."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from gateway.engine.commands import Respond
from gateway.engine.llm import Generated
from gateway.engine.model_set import Models
from gateway.engine.model_threads import CpuPriority, ModelThreads
from gateway.engine.reply import CallOut, Output, PieceOut, ReplyStream
from gateway.engine.speech_plan import SynthesisCost

RATE = 24000


class FakeGenerator:
    """Writes ``reply`` token by token, ``token_s`` apart, like ReplyGenerator.generate."""

    def __init__(self, reply: list[str], token_s: float = 0.01) -> None:
        self.reply = reply
        self.token_s = token_s
        self.prompts: list[list[int]] = []

    def tokenize(self, prompt: str) -> list[int]:
        return [ord(c) for c in prompt]

    def generate(self, prompt: list[int], max_tokens: int, on_text: Callable[[str], None], stop: threading.Event,
                 priority: CpuPriority | None = None) -> Generated:
        self.prompts.append(prompt)
        written = []
        for token in self.reply[:max_tokens]:
            if stop.wait(self.token_s):
                return Generated("".join(written), len(written), 0, len(prompt), True)
            written.append(token)
            on_text(token)
        return Generated("".join(written), len(written), 0, len(prompt), False)


class FakeVoice:
    default_voice = "fake"

    def __init__(self) -> None:
        self.spoken: list[str] = []

    def synthesize(self, text: str, voice: str | None = None, speed: float = 1.0) -> np.ndarray:
        time.sleep(0.002 * len(text))
        self.spoken.append(text)
        return np.ones(int(len(text) * 0.07 * RATE), np.int16)


def models(reply: list[str]) -> Models:
    return Models(None, FakeGenerator(reply), FakeVoice(), SynthesisCost())  # type: ignore[arg-type]


def spec(**fields: Any) -> Respond:
    return Respond("resp_1", "Seja breve.", True, **fields)


class Collected:
    def __init__(self) -> None:
        self.outputs: list[tuple[float, Output]] = []

    async def __call__(self, output: Output) -> None:
        self.outputs.append((time.monotonic(), output))

    def text(self) -> str:
        return " ".join(o.text for _, o in self.outputs if isinstance(o, PieceOut))


TOKENS = ["Olá!", " A", " capital", " do", " Brasil", " é", " Brasília", "."]


async def test_a_reply_flows_piece_by_piece_with_its_audio() -> None:
    threads = ModelThreads()
    try:
        out = Collected()
        stream = ReplyStream(models(TOKENS), threads, spec(), "prompt", "", 100, out)
        await stream.release(out)
        generated = await stream.run()
        assert generated is not None and generated.text == "".join(TOKENS)
        assert out.text() == "Olá! A capital do Brasil é Brasília."
        pieces = [o for _, o in out.outputs if isinstance(o, PieceOut)]
        assert pieces[0].text == "Olá!" and len(pieces) >= 2
        assert all(p.pcm is not None and len(p.pcm) for p in pieces)
        assert pieces[-1].llm_text == "".join(TOKENS)
    finally:
        threads.close()


async def test_a_draft_holds_its_first_piece_until_released() -> None:
    threads = ModelThreads()
    try:
        fake = models(TOKENS)
        draft = ReplyStream(fake, threads, spec(), "prompt", "", 100, None)
        task = asyncio.create_task(draft.run())
        await asyncio.sleep(0.5)  # the whole reply is written by now, but only its first piece spoken
        assert fake.voice.spoken == ["Olá!"]  # type: ignore[union-attr]
        out = Collected()
        released_at = time.monotonic()
        await draft.release(out)
        await task
        assert out.text() == "Olá! A capital do Brasil é Brasília."
        assert out.outputs[0][0] - released_at < 0.05  # the held piece goes out at once
    finally:
        threads.close()


async def test_a_dropped_draft_says_nothing_and_stops_writing() -> None:
    threads = ModelThreads()
    try:
        fake = models(["palavra "] * 200)
        draft = ReplyStream(fake, threads, spec(), "prompt", "", 500, None)
        task = asyncio.create_task(draft.run())
        await asyncio.sleep(0.2)
        draft.stop()
        generated = await asyncio.wait_for(task, 2)
        assert generated is not None and generated.stopped and generated.tokens < 50
    finally:
        threads.close()


async def test_a_function_call_comes_after_what_was_said() -> None:
    threads = ModelThreads()
    try:
        out = Collected()
        reply = ["Vou", " ver.", "\n<tool_call>", '\n{"name": "get_weather", "arguments": {"city": "Recife"}}',
                 "\n</tool_call>"]
        tools = ({"type": "function", "name": "get_weather", "parameters": {"type": "object"}},)
        stream = ReplyStream(models(reply), threads, spec(tools=tools), "prompt", "", 100, out)
        await stream.release(out)
        await stream.run()
        kinds = [type(o) for _, o in out.outputs]
        assert kinds == [PieceOut, CallOut]
        assert out.outputs[1][1] == CallOut("get_weather", '{"city": "Recife"}')
        assert out.outputs[0][1].llm_text is None  # type: ignore[union-attr]  # the history keeps the call itself
    finally:
        threads.close()


async def test_a_text_only_reply_streams_words_without_audio() -> None:
    threads = ModelThreads()
    try:
        out = Collected()
        stream = ReplyStream(models(TOKENS), threads, Respond("resp_1", "x", False), "prompt", "", 100, out)
        await stream.release(out)
        await stream.run()
        assert out.text().split() == "Olá! A capital do Brasil é Brasília.".split()
        assert all(o.pcm is None for _, o in out.outputs if isinstance(o, PieceOut))
    finally:
        threads.close()


async def test_the_tts_runs_the_earliest_deadline_first() -> None:
    threads = ModelThreads()
    try:
        order: list[str] = []
        gate = threading.Event()

        def job(name: str) -> None:
            gate.wait(2)
            order.append(name)

        blocker = asyncio.ensure_future(threads.tts(job, "running", deadline=0.0))
        await asyncio.sleep(0.05)
        late = asyncio.ensure_future(threads.tts(job, "late", deadline=50.0))
        soon = asyncio.ensure_future(threads.tts(job, "soon", deadline=10.0))
        await asyncio.sleep(0.05)
        gate.set()
        await asyncio.gather(blocker, late, soon)
        assert order == ["running", "soon", "late"]
    finally:
        threads.close()
