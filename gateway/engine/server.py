"""The engine's I/O: a Realtime WebSocket server that runs each session's work with the models.

Models load once per process, in a worker thread, while ``/healthz`` answers 503; then each
connection gets a :class:`SessionRunner` that owns its tasks (reading the socket, working
through the session's commands, an early transcription) in one TaskGroup. Inference always runs
on :class:`~.model_threads.ModelThreads` threads, so the event loop keeps reading audio and streaming
replies while Whisper, the LLM or the TTS compute.
"""

from __future__ import annotations

import asyncio
import http
import json
import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ..config import DEFAULT_INSTRUCTIONS
from ..core.audio_format import UPSTREAM_RATE
from ..core.events import ProtocolError, decode_audio, dumps, error_event, loads, server_event
from .commands import Cancel, Respond, Transcribe
from .config import EngineConfig
from .llm import SPOKEN_STYLE, ReplyGenerator
from .model_threads import ModelThreads
from .models import ModelError, choose_models
from .session import EngineSession
from .speech_text import SentenceSplitter, speakable
from .stt import Transcriber
from .tts import EspeakVoice, KokoroVoice
from .vad import SpeechProbability

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class Models:
    transcriber: Transcriber
    generator: ReplyGenerator
    voice: KokoroVoice | EspeakVoice

    @classmethod
    def load(cls, config: EngineConfig) -> Models:
        """Blocking (seconds; minutes the first time, when packaged files are assembled)."""
        started = time.monotonic()
        if shutil.which("espeak-ng") is None:
            raise ModelError("espeak-ng is not installed: it gives the TTS its pt-BR phonemes "
                             "(apt-get install espeak-ng, or run scripts/setup_engine.sh)")
        choice = choose_models(config)
        transcriber = Transcriber(choice.whisper_dir, config.threads)
        generator = ReplyGenerator(choice.llm_file, config.threads, config.context_tokens)
        voice: KokoroVoice | EspeakVoice = (
            KokoroVoice(choice.kokoro, config.kokoro_voice, config.threads) if choice.kokoro else EspeakVoice())
        voice.synthesize("Olá.")  # warm up: the first ONNX run allocates its arenas
        transcriber.transcribe(voice.synthesize("Olá, tudo bem?"), "pt")
        # Evaluate the usual system prompt once, so the first turn reuses llama.cpp's cached prefix.
        generator.generate([{"role": "system", "content": f"{DEFAULT_INSTRUCTIONS}\n{SPOKEN_STYLE}"},
                            {"role": "user", "content": "Olá"}], 1, lambda _: None, threading.Event())
        logger.info("models loaded in %.1f s: stt %s, llm %s, tts %s (voice %s), %d threads",
                    time.monotonic() - started, choice.whisper_dir, choice.llm_file,
                    choice.kokoro.model if choice.kokoro else "espeak-ng", voice.default_voice, config.threads)
        return cls(transcriber, generator, voice)


@dataclass
class _Timing:
    """Milliseconds from the end of a turn (its commit) to each stage's first output (for the bench)."""

    started: float
    marks: dict[str, Any] = field(default_factory=dict)

    def mark(self, name: str) -> None:
        if name not in self.marks:
            self.marks[name] = round((time.monotonic() - self.started) * 1000, 1)


def _timed(job: Callable[..., T], *args: Any) -> tuple[T, float]:
    """``job(*args)`` and the seconds it took (for the timing log the bench reads)."""
    started = time.perf_counter()
    return job(*args), time.perf_counter() - started


class SessionRunner:
    """One connection: the session's protocol logic plus the work its commands ask for."""

    def __init__(self, connection: ServerConnection, models: Models, threads: ModelThreads, config: EngineConfig) -> None:
        self._ws = connection
        self._models = models
        self._threads = threads
        self._config = config
        self.session = EngineSession()
        self._vad = SpeechProbability()
        self._work: asyncio.Queue[Transcribe | Respond] = asyncio.Queue()
        self._stop_generation: dict[str, threading.Event] = {}
        self._early: tuple[tuple[float, float], asyncio.Task[tuple[str, float]]] | None = None  # key, transcription
        self._committed_at: dict[str, float] = {}  # response id → when its turn ended

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tasks:
                worker = tasks.create_task(self._work_through_commands())
                expiry = tasks.create_task(self._expire()) if self._config.session_max_s else None
                await self._flush_after(self.session.outbox.append,
                                        server_event("session.created", session=self.session.session))
                async for message in self._ws:
                    await self._receive(message)
                worker.cancel()
                if expiry is not None:
                    expiry.cancel()
        except* ConnectionClosed:
            pass
        finally:
            for stop in self._stop_generation.values():
                stop.set()
            if self._early is not None:
                self._early[1].cancel()

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
            await self._flush_after(self.session.append_audio, pcm, self._vad.push(pcm))
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
                stop = self._stop_generation.get(command.response_id)
                if stop is not None:
                    stop.set()
            elif isinstance(command, Transcribe) and command.item_id is None:
                self._transcribe_early(command)
            else:
                if isinstance(command, Respond):
                    self._committed_at[command.response_id] = time.monotonic()
                self._work.put_nowait(command)
        outbox, session.outbox = session.outbox, []
        for event in outbox:
            await self._ws.send(dumps(event))

    def _transcribe_early(self, command: Transcribe) -> None:
        """The user paused: transcribe now, so if the pause ends the turn the text is (nearly) ready."""
        if self._early is not None:
            self._early[1].cancel()
        task = asyncio.create_task(self._threads.stt(_timed, self._models.transcriber.transcribe, command.pcm,
                                                     command.language))
        self._early = (command.audio_key, task)

    async def _transcription(self, command: Transcribe) -> tuple[str, float, bool]:
        """The turn's text, the seconds Whisper took, and whether the early transcription served."""
        early, self._early = self._early, None
        if early is not None and early[0] == command.audio_key and not early[1].cancelled():
            text, seconds = await early[1]
            return text, seconds, True
        if early is not None:
            early[1].cancel()
        text, seconds = await self._threads.stt(_timed, self._models.transcriber.transcribe, command.pcm,
                                                command.language)
        return text, seconds, False

    async def _work_through_commands(self) -> None:
        """Transcriptions and responses in order: a reply is generated after the turn it answers."""
        while True:
            command = await self._work.get()
            if isinstance(command, Transcribe):
                started = time.monotonic()
                text, seconds, early = await self._transcription(command)
                logger.info("timing %s", json.dumps({
                    "item_id": command.item_id, "audio_s": round(len(command.pcm) / UPSTREAM_RATE, 3), "early": early,
                    "stt_ms": round(seconds * 1000, 1), "stt_wait_ms": round((time.monotonic() - started) * 1000, 1)}))
                await self._flush_after(self.session.transcribed, command.item_id, text, len(command.pcm) / UPSTREAM_RATE)
            elif self.session.response is not None and self.session.response.id == command.response_id:
                await self._respond(command)
            else:
                self._committed_at.pop(command.response_id, None)

    async def _respond(self, command: Respond) -> None:
        """LLM text flows into the TTS piece by piece, so the first audio leaves early."""
        loop = asyncio.get_running_loop()
        stop = self._stop_generation[command.response_id] = threading.Event()
        texts: asyncio.Queue[str | None] = asyncio.Queue()
        messages = self.session.dialogue.messages(command.instructions)
        max_tokens = min(self._config.max_reply_tokens, command.max_tokens or self._config.max_reply_tokens)
        timing = _Timing(self._committed_at.pop(command.response_id, time.monotonic()))
        timing.mark("llm_start_ms")

        totals = {"tokens": 0, "tts_s": 0.0, "audio_s": 0.0}

        def on_text(text: str) -> None:
            totals["tokens"] += 1
            loop.call_soon_threadsafe(texts.put_nowait, text)

        async def generate() -> None:
            try:
                await self._threads.llm(self._models.generator.generate, messages, max_tokens, on_text, stop,
                                        self._threads.priority)
            finally:
                texts.put_nowait(None)

        async def speak() -> None:
            splitter = SentenceSplitter()
            while not stop.is_set():
                text = await texts.get()
                timing.mark("llm_first_token_ms")
                for piece in splitter.flush() if text is None else splitter.push(text):
                    if stop.is_set():
                        return
                    timing.mark("llm_first_piece_ms")
                    pcm = None
                    if command.audio:
                        pcm, seconds = await self._threads.tts(_timed, self._models.voice.synthesize,
                                                               speakable(piece), command.voice, command.speed)
                        totals["tts_s"] += seconds
                        totals["audio_s"] += len(pcm) / UPSTREAM_RATE
                    timing.mark("tts_first_piece_ms")
                    await self._flush_after(self.session.response_piece, command.response_id, piece, pcm)
                if text is None:
                    return

        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(generate())
                tasks.create_task(speak())
            await self._flush_after(self.session.response_finished, command.response_id)
        finally:
            stop.set()
            del self._stop_generation[command.response_id]
            timing.mark("done_ms")
            logger.info("timing %s", json.dumps({"response_id": command.response_id, **timing.marks,
                                                 **{k: round(v, 3) for k, v in totals.items()}}))


class EngineServer:
    """Owns the listening socket, the models and their worker threads."""

    def __init__(self, config: EngineConfig) -> None:
        self._config = config
        self._models: Models | None = None
        self._threads = ModelThreads()

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Plain HTTP before the WebSocket handshake: health checks, and 503 while loading."""
        path = request.path.split("?")[0]
        if path == "/healthz":
            status = http.HTTPStatus.OK if self._models else http.HTTPStatus.SERVICE_UNAVAILABLE
            body = b'{"status":"ok"}' if self._models else b'{"status":"loading models"}'
            return Response(status.value, status.phrase, Headers({"Content-Type": "application/json"}), body)
        if path != "/v1/realtime":
            return connection.respond(http.HTTPStatus.NOT_FOUND, "Not found: use /v1/realtime\n")
        if self._models is None:
            return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "The engine is still loading models.\n")
        return None

    async def _handle(self, connection: ServerConnection) -> None:
        assert self._models is not None
        await SessionRunner(connection, self._models, self._threads, self._config).run()

    async def serve_forever(self) -> None:
        try:
            async with serve(self._handle, self._config.host, self._config.port,
                             process_request=self._process_request, max_size=16 * 1024 * 1024,
                             compression=None) as server:
                logger.info("engine listening on ws://%s:%d/v1/realtime (loading models…)", self._config.host,
                            self._config.port)
                started = time.monotonic()
                self._models = await asyncio.to_thread(Models.load, self._config)
                logger.info("engine ready in %.1f s", time.monotonic() - started)
                await server.serve_forever()
        finally:
            self._threads.close()
