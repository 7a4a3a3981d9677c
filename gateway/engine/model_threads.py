"""Where the engine's model computations run: off the event loop, one model job at a time.

Each model has its own single worker thread, so a model is only ever used from one thread and
the asyncio loop (which reads audio, runs the VAD and streams replies) never waits for one. On a
small machine the models would still fight over the cores — and several threads spinning on two
cores slow everyone, the gateway's media pacing included — so :class:`CpuPriority` gives the CPU to
what a listener is waiting for:

- the TTS piece that plays next runs first: TTS jobs wait in order of the moment their audio is
  needed (the first piece of a reply: now), and an urgent one pauses LLM decoding between two
  tokens (a token is ~25–100 ms);
- transcription is urgent too (the user has stopped talking and waits);
- a TTS job far from its deadline is not urgent: it runs *alongside* the LLM, which then
  computes on fewer threads so the two share the cores instead of both spinning on all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class CpuPriority:
    """Urgent jobs run at once and the LLM waits between tokens while one runs; jobs running
    *alongside* the LLM only ask it to use fewer threads."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._urgent = 0
        self._alongside = 0

    @contextlib.contextmanager
    def running(self, urgent: bool) -> Iterator[None]:
        with self._changed:
            if urgent:
                self._urgent += 1
            else:
                self._alongside += 1
        try:
            yield
        finally:
            with self._changed:
                if urgent:
                    self._urgent -= 1
                else:
                    self._alongside -= 1
                self._changed.notify_all()

    def urgent(self) -> contextlib.AbstractContextManager[None]:
        return self.running(True)

    @property
    def sharing(self) -> bool:
        """Whether a model job runs alongside the LLM right now."""
        return self._alongside > 0

    @property
    def busy(self) -> bool:
        return self._urgent > 0

    def wait_for_urgent(self, stop: threading.Event, poll_s: float = 0.05) -> None:
        """Block while an urgent job runs (or until ``stop``); called by the LLM between tokens."""
        with self._changed:
            while self._urgent and not stop.is_set():
                self._changed.wait(poll_s)


class DeadlineWorker:
    """One thread running jobs earliest deadline first (ties: first come)."""

    def __init__(self, name: str) -> None:
        self._jobs: list[tuple[float, int, Callable[[], Any], Future[Any]]] = []
        self._order = itertools.count()
        self._ready = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def submit(self, deadline: float, job: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        with self._ready:
            if self._closed:
                raise RuntimeError("the worker is closed")
            heapq.heappush(self._jobs, (deadline, next(self._order), job, future))
            self._ready.notify()
        return future

    def _work(self) -> None:
        while True:
            with self._ready:
                while not self._jobs and not self._closed:
                    self._ready.wait()
                if self._closed and not self._jobs:
                    return
                _, _, job, future = heapq.heappop(self._jobs)
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(job())
            except BaseException as exc:  # handed to the awaiting coroutine
                future.set_exception(exc)

    def close(self) -> None:
        with self._ready:
            self._closed = True
            for _, _, _, future in self._jobs:
                future.cancel()
            self._jobs.clear()
            self._ready.notify_all()


class ModelThreads:
    """The engine's three model threads and the CPU priority between them. Owned by the server,
    which calls :meth:`close` on exit; a job already running finishes on its own (the LLM stops
    at the next token once its stop event is set)."""

    def __init__(self) -> None:
        self.priority = CpuPriority()
        self._stt = ThreadPoolExecutor(1, thread_name_prefix="engine-stt")
        self._llm = ThreadPoolExecutor(1, thread_name_prefix="engine-llm")
        self._tts = DeadlineWorker("engine-tts")

    def _prioritized(self, urgent: bool, job: Callable[..., T], *args: object) -> Callable[[], T]:
        def call() -> T:
            with self.priority.running(urgent):
                return job(*args)

        return call

    async def stt(self, job: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._stt, self._prioritized(True, job, *args))

    async def tts(self, job: Callable[..., T], *args: object, deadline: float = 0.0, urgent: bool = True) -> T:
        """``deadline``: when the audio is needed (monotonic s; earliest runs first)."""
        return await asyncio.wrap_future(self._tts.submit(deadline, self._prioritized(urgent, job, *args)))

    async def llm(self, job: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._llm, job, *args)

    def close(self) -> None:
        for executor in (self._stt, self._llm):
            executor.shutdown(wait=False, cancel_futures=True)
        self._tts.close()
