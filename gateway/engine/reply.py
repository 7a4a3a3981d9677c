"""One reply being written and spoken: LLM tokens → parser → planner → TTS → pieces out.

The LLM writes on its thread while the TTS speaks on its own; the planner (``speech_plan``)
decides after each piece what to synthesize next, so the next piece's audio is ready before the
one playing ends. A reply may start as a *draft*, on the early transcript of a turn that has not
ended yet: it writes and synthesizes its first piece, and holds them until :meth:`release` (the
turn ended as transcribed: the draft becomes the response) or :meth:`stop` (the user went on).

Owned by the session runner, which awaits :meth:`run` (or cancels it) and delivers what comes
out to the sans-I/O session.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.audio_format import UPSTREAM_RATE as RATE
from .commands import Respond
from .llm import Generated
from .model_set import Models
from .model_threads import ModelThreads
from .prompt import CALL_OPEN, FunctionCall, ReplyParser, Spoken
from .speech_plan import SpeechPlanner
from .speech_text import speakable

logger = logging.getLogger(__name__)
URGENT_AHEAD_S = 1.5  # a TTS job with less audio than this ahead of it pauses the LLM


@dataclass(frozen=True)
class PieceOut:
    text: str
    pcm: np.ndarray | None  # None: a text-only reply
    llm_text: str | None  # the reply so far as the LLM wrote it (None once it called a function)


@dataclass(frozen=True)
class CallOut:
    name: str
    arguments: str


Output = PieceOut | CallOut
Deliver = Callable[[Output], Awaitable[None]]


@dataclass
class ReplyTiming:
    """Monotonic times of a reply's stages (the runner logs them relative to the turn's end)."""

    llm_start: float
    first_token: float | None = None
    first_piece: float | None = None
    first_audio: float | None = None
    tokens: int = 0
    tts_s: float = 0.0
    audio_s: float = 0.0
    prompt_reused: int = 0
    prompt_evaluated: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def _timed(job: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    return job(*args), time.perf_counter() - started


class ReplyStream:
    def __init__(self, models: Models, threads: ModelThreads, spec: Respond, prompt: str, opened: str,
                 max_tokens: int, deliver: Deliver | None) -> None:
        """``prompt``: the rendered prompt (``opened``: the part of the reply it already wrote);
        ``deliver`` None: a draft, held until :meth:`release`."""
        self.spec = spec
        self.prompt = prompt
        self._models = models
        self._threads = threads
        self._max_tokens = max_tokens
        self._deliver = deliver
        self._released = asyncio.Event()
        if deliver is not None:
            self._released.set()
        self._held: list[Output] = []
        self._calls: list[CallOut] = []
        self._stop = threading.Event()
        self._loop = asyncio.get_running_loop()
        self._parser = ReplyParser([t["name"] for t in spec.tools] if spec.tool_choice != "none" else [], opened)
        self._planner = SpeechPlanner(models.cost)
        self._text_arrived = asyncio.Event()
        self._llm_text: list[str] = []
        self._llm_done = False
        self.timing = ReplyTiming(time.monotonic())
        self.generated: Generated | None = None

    # --- control -----------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()
        self._text_arrived.set()
        self._released.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    async def release(self, deliver: Deliver) -> None:
        """The draft answers the turn: what it holds goes out now, the rest as it comes."""
        self._deliver = deliver
        self._planner.play(time.monotonic())
        held, self._held = self._held, []
        for output in held:
            await deliver(output)
        self._released.set()

    async def run(self) -> Generated | None:
        tokens = self._models.generator.tokenize(self.prompt)
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._write(tokens))
                tasks.create_task(self._speak())
        finally:
            self._stop.set()
        return self.generated

    # --- the LLM -------------------------------------------------------------------------------

    def _on_text(self, text: str) -> None:  # on the LLM's thread
        self._loop.call_soon_threadsafe(self._take_text, text)

    def _take_text(self, text: str) -> None:
        if self.timing.first_token is None:
            self.timing.first_token = time.monotonic()
        self.timing.tokens += 1
        self._llm_text.append(text)
        self._route(self._parser.push(text))

    def _route(self, parts: list[Spoken | FunctionCall]) -> None:
        for part in parts:
            if isinstance(part, FunctionCall):
                self._calls.append(CallOut(part.name, part.arguments))
            else:
                self._planner.push(part.text)
        self._text_arrived.set()

    async def _write(self, tokens: list[int]) -> None:
        generator = self._models.generator
        try:
            self.generated = await self._threads.llm(generator.generate, tokens, self._max_tokens, self._on_text,
                                                     self._stop, self._threads.priority)
            self.timing.prompt_reused = self.generated.reused
            self.timing.prompt_evaluated = self.generated.evaluated
        finally:
            await asyncio.sleep(0)  # let the last call_soon_threadsafe text land first
            self._route(self._parser.finish())
            self._planner.end()
            self._llm_done = True
            self._text_arrived.set()

    # --- speech ----------------------------------------------------------------------------------

    async def _speak(self) -> None:
        while not self._stop.is_set():
            if self._planner.done and self._llm_done:
                break
            if not self._released.is_set() and self._planner.pieces >= 1:
                await self._released.wait()  # a draft speaks no further than its first piece
                continue
            now = time.monotonic()
            piece = self._next_piece(now)
            if piece is None:
                if self._planner.done and self._llm_done:
                    break
                wake = self._planner.wake_at(now) if self.spec.audio else None
                self._text_arrived.clear()
                try:
                    await asyncio.wait_for(self._text_arrived.wait(), None if wake is None else max(0.0, wake - now))
                except TimeoutError:
                    pass
                continue
            if self.timing.first_piece is None:
                self.timing.first_piece = time.monotonic()
            await self._say(piece)
        if not self._stop.is_set():
            for call in self._calls:
                await self._out(call)

    def _next_piece(self, now: float) -> str | None:
        if self.spec.audio:
            return self._planner.next_piece(now)
        return self._planner.next_words()  # text only: every word goes out once it is complete

    async def _say(self, piece: str) -> None:
        pcm: np.ndarray | None = None
        if self.spec.audio:
            now = time.monotonic()
            ahead = self._planner.ahead_s(now)
            urgent = self._planner.pieces <= 1 or ahead < URGENT_AHEAD_S
            audio, took = await self._threads.tts(_timed, self._models.voice.synthesize, speakable(piece),
                                                  self.spec.voice, self.spec.speed, deadline=now + ahead, urgent=urgent)
            if self._stop.is_set():
                return
            pcm = audio
            seconds = len(audio) / RATE
            self._models.cost.observe(piece, seconds, took)
            self.timing.tts_s += took
            self.timing.audio_s += seconds
            self._planner.sent(seconds, time.monotonic() if self._released.is_set() else None)
            if self.timing.first_audio is None:
                self.timing.first_audio = time.monotonic()
        written = "".join(self._llm_text)
        await self._out(PieceOut(piece, pcm, None if self._calls or CALL_OPEN in written else written))

    async def _out(self, output: Output) -> None:
        if self._deliver is None or not self._released.is_set():
            self._held.append(output)
        else:
            await self._deliver(output)
