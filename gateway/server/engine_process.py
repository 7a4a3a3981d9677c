"""Runs the offline local engine as a child process while the gateway serves.

The engine is a separate process so that model inference can never stall the gateway's media
pacing. If an engine already answers on the configured port (started by hand, or shared by
several gateway workers), it is used as is and left running on exit; the gateway then needs
that engine's key (``ENGINE_API_KEY``), and says so at start if it has the wrong one.

The engine only accepts connections that present its key. For an engine it starts, the gateway
generates a fresh key (or uses ``ENGINE_API_KEY``) and hands it over in the child's
environment, never on its command line (``ps`` shows every user the command lines). The
gateway's own worker processes, started after this, inherit it the same way; :attr:`config`
is the gateway's configuration carrying it, for the process that started the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import secrets
import sys
import time
from types import TracebackType

import aiohttp

from ..config import Config
from .parent_death import child_env

logger = logging.getLogger(__name__)
KEY_ENV = "ENGINE_API_KEY"


class EngineStartError(RuntimeError):
    pass


class EngineProcess:
    def __init__(self, config: Config) -> None:
        self._process: asyncio.subprocess.Process | None = None
        self._base = f"http://{config.engine_host}:{config.engine_port}"
        self._health_url = f"{self._base}/healthz"
        self.config = config

    async def _healthy(self, session: aiohttp.ClientSession) -> bool:
        with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
            async with session.get(self._health_url, timeout=aiohttp.ClientTimeout(total=2)) as response:
                return response.status == 200
        return False

    async def _accepts(self, session: aiohttp.ClientSession, key: str | None) -> bool:
        """Whether the running engine takes ``key`` (it answers 401 before any handshake if not)."""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
            async with session.get(f"{self._base}/v1/realtime", headers=headers,
                                   timeout=aiohttp.ClientTimeout(total=2)) as response:
                return response.status != 401
        return True  # unreachable now: calls will say why

    async def __aenter__(self) -> EngineProcess:
        async with aiohttp.ClientSession() as session:
            if await self._healthy(session):
                if not await self._accepts(session, self.config.engine_api_key):
                    raise EngineStartError(f"a local engine already runs at {self._base} and refuses this gateway's "
                                           f"key: start the gateway with that engine's {KEY_ENV}")
                logger.info("using the local engine already running at %s", self._health_url)
                return self
            key = self.config.engine_api_key or secrets.token_urlsafe(32)
            self.config = dataclasses.replace(self.config, engine_api_key=key)
            os.environ[KEY_ENV] = key  # the gateway's worker processes, started next, inherit it
            env = child_env({**os.environ, "HF_HUB_OFFLINE": "1", KEY_ENV: key})
            env.pop("OPENAI_API_KEY", None)  # the engine never needs it
            self._process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway.engine",
                "--host", self.config.engine_host, "--port", str(self.config.engine_port), env=env)
            logger.info("starting the local engine (pid %d); the first start joins and checks the "
                        "model files, which takes a while", self._process.pid)
            started = time.monotonic()
            deadline = started + self.config.engine_start_timeout_s
            while not await self._healthy(session):
                if self._process.returncode is not None:
                    raise EngineStartError(f"the local engine exited with status {self._process.returncode}; "
                                           "see its log above")
                if time.monotonic() > deadline:
                    await self._stop()
                    raise EngineStartError(f"the local engine was not ready after "
                                           f"{self.config.engine_start_timeout_s:.0f} s (ENGINE_START_TIMEOUT)")
                await asyncio.sleep(0.5)
            logger.info("local engine ready in %.1f s", time.monotonic() - started)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self._stop()

    async def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()
