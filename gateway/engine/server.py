"""The engine's I/O: a Realtime WebSocket server that runs each session's work with the models.

Models load once per process, in a worker thread, while ``/healthz`` answers 503; then each
connection gets a :class:`SessionRunner` that owns two tasks (reading the socket, working through
the session's commands) in one TaskGroup. Inference always runs in worker threads, so the event
loop keeps streaming audio while Whisper, the LLM or the TTS compute.
"""

from __future__ import annotations

import asyncio
import http
import json
import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ..config import DEFAULT_INSTRUCTIONS
from ..events import ProtocolError, decode_audio, dumps, error_event, loads, server_event
from .config import EngineConfig
from .models import KOKORO_INT8, LLMS, WHISPER_BASE, materialize
from .session import Cancel, EngineSession, Respond, Transcribe
from .speech_text import SentenceSplitter, speakable
from .stt import Transcriber
from .tts import EspeakVoice, KokoroVoice
from .vad import SpeechProbability

logger = logging.getLogger(__name__)


@dataclass
class Models:
    transcriber: Transcriber
    generator: "ReplyGenerator"  # noqa: F821 - imported lazily (llama.cpp is heavy)
    voice: KokoroVoice | EspeakVoice

    @classmethod
    def load(cls, config: EngineConfig) -> Models:
        from .llm import SPOKEN_STYLE, ReplyGenerator

        started = time.monotonic()
        whisper_dir = config.whisper_path or materialize(WHISPER_BASE, config.cache_dir)
        llm_file = config.llm_path or materialize(LLMS[config.llm], config.cache_dir) / "model.gguf"
        transcriber = Transcriber(whisper_dir, config.threads)
        generator = ReplyGenerator(llm_file, config.threads, config.context_tokens)
        if config.tts == "kokoro":
            voice: KokoroVoice | EspeakVoice = KokoroVoice(materialize(KOKORO_INT8, config.cache_dir),
                                                           config.kokoro_voice, config.threads)
        else:
            voice = EspeakVoice()
        voice.synthesize("Olá.")  # warm up: the first ONNX run allocates its arenas
        # Prefill the usual system prompt once, so the first turn reuses llama.cpp's cached prefix.
        generator.generate([{"role": "system", "content": f"{DEFAULT_INSTRUCTIONS}\n{SPOKEN_STYLE}"},
                            {"role": "user", "content": "Olá"}], 1, lambda _: None, threading.Event())
        logger.info("models loaded in %.1f s (stt %s, llm %s, tts %s)", time.monotonic() - started,
                    whisper_dir.name, llm_file.name, config.tts)
        return cls(transcriber, generator, voice)


class SessionRunner:
    """One connection: the session's protocol logic plus the work its commands ask for."""

    def __init__(self, connection: ServerConnection, models: Models, config: EngineConfig) -> None:
        self._ws = connection
        self._models = models
        self._config = config
        self.session = EngineSession()
        self._vad = SpeechProbability()
        self._work: asyncio.Queue[Transcribe | Respond] = asyncio.Queue()
        self._stop_generation: dict[str, threading.Event] = {}

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tasks:
                worker = tasks.create_task(self._work_through_commands())
                if self._config.session_max_s:
                    tasks.create_task(self._expire())
                await self._flush_after(self.session.outbox.append,
                                        server_event("session.created", session=self.session.session))
                async for message in self._ws:
                    await self._receive(message)
                worker.cancel()
        except* ConnectionClosed:
            pass
        finally:
            for stop in self._stop_generation.values():
                stop.set()

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

    async def _flush_after(self, method, *args) -> None:  # type: ignore[no-untyped-def]
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
            else:
                self._work.put_nowait(command)
        outbox, session.outbox = session.outbox, []
        for event in outbox:
            await self._ws.send(dumps(event))

    async def _work_through_commands(self) -> None:
        """Transcriptions and responses in order: a reply is generated after the turn it answers."""
        while True:
            command = await self._work.get()
            if isinstance(command, Transcribe):
                started = time.monotonic()
                text = await asyncio.to_thread(self._models.transcriber.transcribe, command.pcm, command.language)
                logger.info("timing %s", json.dumps({"item_id": command.item_id, "audio_s": len(command.pcm) / 24000,
                                                     "stt_ms": round((time.monotonic() - started) * 1000, 1)}))
                await self._flush_after(self.session.transcribed, command.item_id, text, len(command.pcm) / 24000)
            elif self.session.response is not None and self.session.response.id == command.response_id:
                await self._respond(command)

    async def _respond(self, command: Respond) -> None:
        """LLM text flows into the TTS piece by piece, so the first audio leaves early."""
        loop = asyncio.get_running_loop()
        stop = self._stop_generation[command.response_id] = threading.Event()
        proceed = threading.Event()  # cleared while the first piece is synthesized: 2 cores, one job
        proceed.set()
        texts: asyncio.Queue[str | None] = asyncio.Queue()
        messages = self.session.conversation.messages(command.instructions)
        timing = _Timing(time.monotonic())

        def on_text(text: str) -> None:
            loop.call_soon_threadsafe(texts.put_nowait, text)

        async def generate() -> None:
            try:
                await asyncio.to_thread(self._models.generator.generate, messages, self._config.max_reply_tokens,
                                        on_text, stop, proceed)
            finally:
                texts.put_nowait(None)

        async def speak() -> None:
            splitter = SentenceSplitter()
            while not stop.is_set():
                text = await texts.get()
                timing.mark("llm_first_token_ms")
                pieces = splitter.flush() if text is None else splitter.push(text)
                for piece in pieces:
                    if stop.is_set():
                        return
                    first = "llm_first_piece_ms" not in timing.marks
                    timing.mark("llm_first_piece_ms")
                    pcm = None
                    if command.audio:
                        if first:
                            proceed.clear()
                        try:
                            pcm = await asyncio.to_thread(self._models.voice.synthesize, speakable(piece))
                        finally:
                            proceed.set()
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
            proceed.set()
            del self._stop_generation[command.response_id]
            logger.info("timing %s", json.dumps({"response_id": command.response_id, **timing.marks}))


@dataclass
class _Timing:
    """Milliseconds from the start of a response to each stage's first output (for the bench)."""

    started: float
    marks: dict[str, float] = field(default_factory=dict)

    def mark(self, name: str) -> None:
        if name not in self.marks:
            self.marks[name] = round((time.monotonic() - self.started) * 1000, 1)


class EngineServer:
    def __init__(self, config: EngineConfig) -> None:
        self._config = config
        self._models: Models | None = None

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.path.split("?")[0] == "/healthz":
            status = http.HTTPStatus.OK if self._models else http.HTTPStatus.SERVICE_UNAVAILABLE
            body = b'{"status":"ok"}' if self._models else b'{"status":"loading models"}'
            return Response(status.value, status.phrase, Headers({"Content-Type": "application/json"}), body)
        if not request.path.startswith("/v1/realtime"):
            return connection.respond(http.HTTPStatus.NOT_FOUND, "Not found: use /v1/realtime\n")
        if self._models is None:
            return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "The engine is still loading models.\n")
        return None

    async def _handle(self, connection: ServerConnection) -> None:
        assert self._models is not None
        await SessionRunner(connection, self._models, self._config).run()

    async def serve_forever(self) -> None:
        async with serve(self._handle, self._config.host, self._config.port, process_request=self._process_request,
                         max_size=16 * 1024 * 1024, compression=None) as server:
            logger.info("engine listening on ws://%s:%d/v1/realtime (loading models…)", self._config.host,
                        self._config.port)
            self._models = await asyncio.to_thread(Models.load, self._config)
            logger.info("engine ready")
            await server.serve_forever()
