"""Runs the offline local engine as a child process while the gateway serves.

The engine is a separate process so that model inference can never stall the gateway's media
pacing. If an engine already answers on the configured port (started by hand, or shared by
several gateway workers), it is used as is and left running on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from types import TracebackType

import aiohttp

from ..config import Config
from .parent_death import child_env

logger = logging.getLogger(__name__)


class EngineStartError(RuntimeError):
    pass


class EngineProcess:
    def __init__(self, config: Config) -> None:
        self._config = config
        self._process: asyncio.subprocess.Process | None = None
        self._health_url = f"http://{config.engine_host}:{config.engine_port}/healthz"

    async def _healthy(self, session: aiohttp.ClientSession) -> bool:
        with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
            async with session.get(self._health_url, timeout=aiohttp.ClientTimeout(total=2)) as response:
                return response.status == 200
        return False

    async def __aenter__(self) -> EngineProcess:
        async with aiohttp.ClientSession() as session:
            if await self._healthy(session):
                logger.info("using the local engine already running at %s", self._health_url)
                return self
            env = child_env({**os.environ, "HF_HUB_OFFLINE": "1"})
            env.pop("OPENAI_API_KEY", None)  # the engine never needs it
            self._process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway.engine",
                "--host", self._config.engine_host, "--port", str(self._config.engine_port), env=env)
            logger.info("starting the local engine (pid %d); the first start joins and checks the "
                        "model files, which takes a while", self._process.pid)
            started = time.monotonic()
            deadline = started + self._config.engine_start_timeout_s
            while not await self._healthy(session):
                if self._process.returncode is not None:
                    raise EngineStartError(f"the local engine exited with status {self._process.returncode}; "
                                           "see its log above")
                if time.monotonic() > deadline:
                    await self._stop()
                    raise EngineStartError(f"the local engine was not ready after "
                                           f"{self._config.engine_start_timeout_s:.0f} s (ENGINE_START_TIMEOUT)")
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
