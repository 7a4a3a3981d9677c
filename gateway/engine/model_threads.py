"""Where the engine's model computations run: off the event loop, one model job at a time.

Each model has its own single worker thread, so a model is only ever used from one thread and
the asyncio loop (which reads audio, runs the VAD and streams replies) never waits for one. On a
small machine the models would still fight over the cores — and several threads spinning on two
cores slow everyone, the gateway's media pacing included — so :class:`CpuPriority` gives the CPU to
what a listener is waiting for: transcription and synthesis go first, and LLM decoding pauses
between two tokens while one of them runs (a token is ~25 ms; the LLM stays well ahead of speech).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class CpuPriority:
    """Urgent jobs (STT, TTS) run at once; the LLM waits between tokens until none is running."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._urgent = 0

    @contextlib.contextmanager
    def urgent(self) -> Iterator[None]:
        with self._changed:
            self._urgent += 1
        try:
            yield
        finally:
            with self._changed:
                self._urgent -= 1
                self._changed.notify_all()

    def wait_for_urgent(self, stop: threading.Event, poll_s: float = 0.05) -> None:
        """Block while an urgent job runs (or until ``stop``); called by the LLM between tokens."""
        with self._changed:
            while self._urgent and not stop.is_set():
                self._changed.wait(poll_s)


class ModelThreads:
    """The engine's three model threads and the CPU priority between them. Owned by the server,
    which calls :meth:`close` on exit; a job already running finishes on its own (the LLM stops
    at the next token once its stop event is set)."""

    def __init__(self) -> None:
        self.priority = CpuPriority()
        self._stt = ThreadPoolExecutor(1, thread_name_prefix="engine-stt")
        self._llm = ThreadPoolExecutor(1, thread_name_prefix="engine-llm")
        self._tts = ThreadPoolExecutor(1, thread_name_prefix="engine-tts")

    async def _run(self, executor: ThreadPoolExecutor, urgent: bool, job: Callable[..., T], *args: object) -> T:
        def call() -> T:
            if not urgent:
                return job(*args)
            with self.priority.urgent():
                return job(*args)

        return await asyncio.get_running_loop().run_in_executor(executor, call)

    async def stt(self, job: Callable[..., T], *args: object) -> T:
        return await self._run(self._stt, True, job, *args)

    async def tts(self, job: Callable[..., T], *args: object) -> T:
        return await self._run(self._tts, True, job, *args)

    async def llm(self, job: Callable[..., T], *args: object) -> T:
        return await self._run(self._llm, False, job, *args)

    def close(self) -> None:
        for executor in (self._stt, self._llm, self._tts):
            executor.shutdown(wait=False, cancel_futures=True)
