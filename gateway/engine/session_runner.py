"""One engine session's I/O: its WebSocket, and the model work its commands ask for.

A :class:`SessionRunner` owns the connection's tasks (reading the socket, working through the
session's commands in order, an early transcription and the reply drafted from it, reading a
long turn ahead) in one TaskGroup, and feeds what the models produce back to the sans-I/O
:class:`~.session.EngineSession`. Inference always runs on
:class:`~.model_threads.ModelThreads` threads, so the event loop keeps reading audio and
streaming replies while Whisper, the LLM or the TTS compute.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import numpy as np
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from ..config import DEFAULT_INSTRUCTIONS
from ..core.audio_format import UPSTREAM_RATE
from ..core.events import ProtocolError, decode_audio, dumps, error_event, loads, server_event
from .commands import Cancel, DropEarly, Respond, Transcribe
from .config import EngineConfig
from .model_set import Models, next_turn_prefix
from .model_threads import ModelThreads
from .prompt import render, reply_prefix
from .reply import CallOut, Output, PieceOut, ReplyStream
from .session import EngineSession
from .vad import SpeechProbability

logger = logging.getLogger(__name__)
T = TypeVar("T")


def _timed(job: Callable[..., T], *args: Any) -> tuple[T, float]:
    """``job(*args)`` and the seconds it took (for the timing log the bench reads)."""
    started = time.perf_counter()
    return job(*args), time.perf_counter() - started


class _Draft:
    """A reply started on an early transcript, for the turn whose audio has ``key``."""

    def __init__(self, key: tuple[float, float], stream: ReplyStream, task: asyncio.Task[Any]) -> None:
        self.key = key
        self.stream = stream
        self.task = task

    def drop(self) -> None:
        self.stream.stop()
        self.task.cancel()


class SessionRunner:
    """One connection: the session's protocol logic plus the work its commands ask for."""

    def __init__(self, connection: ServerConnection, models: Models, threads: ModelThreads, config: EngineConfig) -> None:
        self._ws = connection
        self._models = models
        self._threads = threads
        self._config = config
        self.session = EngineSession(DEFAULT_INSTRUCTIONS, config.max_input_s * 1000)
        self._vad = SpeechProbability()
        self._work: asyncio.Queue[Transcribe | Respond] = asyncio.Queue()
        self._replies: dict[str, ReplyStream] = {}  # response id → its stream, while it runs
        self._early: tuple[tuple[float, float], asyncio.Task[tuple[str, float]]] | None = None  # key, transcription
        self._claimed: asyncio.Task[tuple[str, float]] | None = None  # the early one a commit awaits
        self._draft: _Draft | None = None
        self._reading: asyncio.Task[None] | None = None  # a long turn's words so far, read ahead
        self._committed_at: dict[str, float] = {}  # response id → when its turn ended
        self._tasks: asyncio.TaskGroup | None = None

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                worker = tasks.create_task(self._work_through_commands())
                expiry = tasks.create_task(self._expire()) if self._config.session_max_s else None
                await self._flush_after(self.session.outbox.append,
                                        server_event("session.created", session=self.session.session))
                async for message in self._ws:
                    await self._receive(message)
                worker.cancel()
                if expiry is not None:
                    expiry.cancel()
                self._drop_early()
        except* ConnectionClosed:
            pass
        finally:
            for stream in self._replies.values():
                stream.stop()
            self._drop_early()

    async def _expire(self) -> None:
        """Like OpenAI's 60-minute cap: past ``session_max_s`` the session ends with an error."""
        await asyncio.sleep(self._config.session_max_s)
        await self._flush_after(self.session.outbox.append, error_event(
            f"Your session hit the maximum duration of {self._config.session_max_s:.0f} seconds.",
            code="session_expired", type_="invalid_request_error"))
        await self._ws.close()

    async def _receive(self, message: str | bytes) -> None:
        try:
            event = loads(message)
        except ProtocolError as exc:
            await self._flush_after(self.session.outbox.append, error_event(str(exc), code=exc.code))
            return
        if event["type"] == "input_audio_buffer.append":
            try:
                pcm = np.frombuffer(decode_audio(event["audio"]), np.int16)
            except (KeyError, TypeError, ValueError):
                await self._flush_after(self.session.outbox.append, error_event(
                    "input_audio_buffer.append needs base64 PCM16 'audio'.", code="invalid_value",
                    event_id=event.get("event_id"), param="audio"))
                return
            await self._flush_after(self.session.append_audio, pcm, self._vad.push(pcm), event.get("event_id"))
        else:
            await self._flush_after(self.session.handle, event)

    async def _flush_after(self, method: Any, *args: Any) -> None:
        method(*args)
        await self._flush()

    async def _flush(self) -> None:
        session = self.session
        commands, session.commands = session.commands, []
        for command in commands:
            if isinstance(command, Cancel):
                stream = self._replies.get(command.response_id)
                if stream is not None:
                    stream.stop()
            elif isinstance(command, DropEarly):
                self._drop_early()
            elif isinstance(command, Transcribe) and command.partial:
                self._read_ahead(command)
            elif isinstance(command, Transcribe) and command.item_id is None:
                self._transcribe_early(command)
            else:
                if isinstance(command, Respond):
                    self._committed_at[command.response_id] = time.monotonic()
                self._work.put_nowait(command)
        outbox, session.outbox = session.outbox, []
        for event in outbox:
            await self._ws.send(dumps(event))

    # --- early work on a paused turn ---------------------------------------------------------

    def _drop_early(self) -> None:
        early, self._early = self._early, None
        if early is not None and early[1] is not self._claimed:  # a commit waits for that one
            early[1].cancel()
        draft, self._draft = self._draft, None
        if draft is not None:
            draft.drop()

    def _transcribe_early(self, command: Transcribe) -> None:
        """The user paused: transcribe now, so if the pause ends the turn the text is (nearly)
        ready; and start on the reply it would get, so its first piece may be ready too."""
        self._drop_early()
        assert self._tasks is not None
        task = self._tasks.create_task(self._threads.stt(_timed, self._models.transcriber.transcribe, command.pcm,
                                                         command.language, command.prompt))
        self._early = (command.audio_key, task)
        if command.draft is not None and self._config.speculate:
            task.add_done_callback(lambda done: self._start_draft(command, done))

    def _read_ahead(self, command: Transcribe) -> None:
        """The user is still talking: transcribe the words so far and have the LLM read them, so
        the prompt is mostly evaluated when the turn ends (when Whisper is free: a pause's early
        transcription must never wait behind this)."""
        if (self._reading is not None and not self._reading.done()) or \
                (self._early is not None and not self._early[1].done()) or self.session.response is not None:
            return
        instructions = self.session.instructions()
        generator = self._models.generator

        async def read() -> None:
            text, _ = await self._threads.stt(_timed, self._models.transcriber.transcribe, command.pcm,
                                              command.language, command.prompt)
            if not text.strip() or self._early is not None and not self._early[1].done():
                return
            messages = [*self.session.dialogue.messages(instructions), {"role": "user", "content": text.strip()}]
            prompt = render(messages)
            prompt = prompt[:prompt.rindex(text.strip()) + len(text.strip())]
            await self._threads.llm(generator.prefill, generator.tokenize(prompt), None, self._threads.priority)

        assert self._tasks is not None
        self._reading = self._tasks.create_task(self._quietly(read(), "read the turn ahead"))

    @staticmethod
    async def _quietly(work: Awaitable[Any], what: str) -> None:
        """Work that only gains time: a failure is logged, never the session's end."""
        try:
            await work
        except Exception:
            logger.exception("could not %s", what)

    def _start_draft(self, command: Transcribe, done: asyncio.Task[tuple[str, float]]) -> None:
        if done.cancelled() or done.exception() is not None or self._early is None or self._early[1] is not done:
            return
        text = done.result()[0].strip()
        if not text or command.draft is None or self.session.response is not None:
            return
        messages = [*self.session.dialogue.messages(command.draft.instructions), {"role": "user", "content": text}]
        stream = self._stream(command.draft, messages, None)
        assert self._tasks is not None
        self._draft = _Draft(command.audio_key, stream, self._tasks.create_task(stream.run()))

    async def _transcription(self, command: Transcribe) -> tuple[str, float, bool]:
        """The turn's text, the seconds Whisper took, and whether the early transcription served
        (it stays in place: a reply may still be drafted from it once it is done)."""
        early = self._early
        if early is not None and early[0] == command.audio_key and not early[1].cancelled():
            self._claimed = early[1]
            try:
                text, seconds = await early[1]
            finally:
                self._claimed = None
            return text, seconds, True
        if early is not None:
            early[1].cancel()
            self._early = None
        text, seconds = await self._threads.stt(_timed, self._models.transcriber.transcribe, command.pcm,
                                                command.language, command.prompt)
        return text, seconds, False

    # --- turns and replies -----------------------------------------------------------------------

    async def _work_through_commands(self) -> None:
        """Transcriptions and responses in order: a reply is generated after the turn it answers."""
        while True:
            command = await self._work.get()
            if isinstance(command, Transcribe):
                if self._draft is not None and self._draft.key != command.audio_key:
                    self._draft.drop()
                    self._draft = None
                started = time.monotonic()
                text, seconds, early = await self._transcription(command)
                logger.info("timing %s", json.dumps({
                    "item_id": command.item_id, "audio_s": round(len(command.pcm) / UPSTREAM_RATE, 3), "early": early,
                    "stt_ms": round(seconds * 1000, 1), "stt_wait_ms": round((time.monotonic() - started) * 1000, 1)}))
                assert command.item_id is not None
                await self._flush_after(self.session.transcribed, command.item_id, text,
                                        len(command.pcm) / UPSTREAM_RATE)
            elif self.session.response is not None and self.session.response.id == command.response_id:
                await self._respond(command)
            else:
                self._committed_at.pop(command.response_id, None)

    def _stream(self, spec: Respond, messages: list[dict[str, Any]], deliver: Any) -> ReplyStream:
        tools = spec.tools if spec.tool_choice != "none" else ()
        opened = reply_prefix(tools, spec.tool_choice)
        max_tokens = min(self._config.max_reply_tokens, spec.max_tokens or self._config.max_reply_tokens)
        return ReplyStream(self._models, self._threads, spec, render(messages, tools, reply_prefix=opened), opened,
                           max_tokens, deliver)

    async def _respond(self, command: Respond) -> None:
        """Speak the reply, from the draft if it was drafted for exactly this prompt."""
        response_id = command.response_id
        messages = self.session.dialogue.messages(command.instructions)

        async def deliver(output: Output) -> None:
            if isinstance(output, PieceOut):
                await self._flush_after(self.session.response_piece, response_id, output.text, output.pcm,
                                        output.llm_text)
            elif isinstance(output, CallOut):
                await self._flush_after(self.session.response_function_call, response_id, output.name,
                                        output.arguments)

        stream = self._stream(command, messages, None)
        draft, self._draft = self._draft, None
        task: asyncio.Task[Any] | asyncio.Future[Any]
        if draft is not None and draft.stream.prompt == stream.prompt and draft.stream.spec == \
                Respond(draft.stream.spec.response_id, *_spec_fields(command)):
            stream, task = draft.stream, draft.task
        else:
            if draft is not None:
                draft.drop()
            assert self._tasks is not None
            task = self._tasks.create_task(stream.run())
        self._replies[response_id] = stream
        committed = self._committed_at.pop(response_id, time.monotonic())
        try:
            await stream.release(deliver)
            generated = await task
            # A cancelled response was finished by the session already: this changes nothing then.
            await self._flush_after(self.session.response_finished, response_id,
                                    None if generated is None else generated.text.strip())
        except asyncio.CancelledError:
            stream.stop()
            raise
        finally:
            self._replies.pop(response_id, None)
            self._log_timing(response_id, stream, committed, draft is not None and stream is draft.stream)
        self._prefill_next_turn(command)

    def _prefill_next_turn(self, command: Respond) -> None:
        """While the user listens and thinks, evaluate the prompt the next turn will start with."""
        if self.session.response is not None:
            return
        tools = command.tools if command.tool_choice != "none" else ()
        prefix = next_turn_prefix(self.session.dialogue.messages(command.instructions), tools)
        generator = self._models.generator

        assert self._tasks is not None
        self._tasks.create_task(self._quietly(self._threads.llm(
            lambda: generator.prefill(generator.tokenize(prefix), None, self._threads.priority)),
            "evaluate the next turn's prompt ahead of time"))

    def _log_timing(self, response_id: str, stream: ReplyStream, committed: float, speculative: bool) -> None:
        timing = stream.timing

        def ms(at: float | None) -> float | None:
            return None if at is None else round((at - committed) * 1000, 1)

        logger.info("timing %s", json.dumps({
            "response_id": response_id, "llm_start_ms": ms(timing.llm_start), "llm_first_token_ms": ms(timing.first_token),
            "llm_first_piece_ms": ms(timing.first_piece), "tts_first_piece_ms": ms(timing.first_audio),
            "done_ms": ms(time.monotonic()), "tokens": timing.tokens, "tts_s": round(timing.tts_s, 3),
            "audio_s": round(timing.audio_s, 3), "speculative": speculative, "prompt_reused": timing.prompt_reused,
            "prompt_evaluated": timing.prompt_evaluated}))


def _spec_fields(command: Respond) -> tuple[Any, ...]:
    """A Respond's settings without its id (a draft's must equal the response's)."""
    return (command.instructions, command.audio, command.voice, command.speed, command.max_tokens, command.tools,
            command.tool_choice)
