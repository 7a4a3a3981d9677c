"""``realtime-gateway`` / ``python -m gateway``: build the config, start what it needs, serve."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import shutil
import signal
import ssl
import sys
from collections.abc import Sequence

from aiohttp import web

from .config import Config, ConfigError, load_config
from .media.native import announce_config
from .server.engine_process import EngineProcess, EngineStartError
from .server.logs import setup_logging
from .server.parent_death import follow_parent
from .server.runtime_dir import check_private, make_private_dir
from .server.signaling import STATE_KEY, create_app
from .server.worker_pool import WorkerCrashLoop, restarts_of, socket_path, supervise

logger = logging.getLogger("gateway")


def _ssl_context(config: Config) -> ssl.SSLContext | None:
    if config.tls_cert is None or config.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.tls_cert, config.tls_key)
    return context


async def serve(config: Config, argv: Sequence[str]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        supervisor = config.worker_index is None and config.workers > 1
        if supervisor:  # checked before the engine spends minutes loading its models
            runtime_dir = make_private_dir(config.runtime_dir)  # fresh, 0700, in a checked parent
            stack.callback(shutil.rmtree, runtime_dir, True)
        if config.resolved_upstream == "local" and config.worker_index is None:
            engine = await stack.enter_async_context(EngineProcess(config))  # one engine, shared by the workers
            config = engine.config  # with the engine's key
        if supervisor:
            await supervise(argv, config.workers, runtime_dir, stop, restarts_of(config))
            return
        if config.worker_index is not None:  # the supervisor's private directory, or refuse
            if config.runtime_dir is None:
                raise ConfigError("RUNTIME_DIR is required for a worker (its supervisor passes it)")
            check_private(config.runtime_dir, exclusive=True)
        app = create_app(config)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        tls = _ssl_context(config)
        worker = config.worker_index
        await web.TCPSite(runner, config.host, config.port, ssl_context=tls, reuse_port=worker is not None).start()
        if worker is not None and config.runtime_dir is not None:
            await web.UnixSite(runner, str(socket_path(config.runtime_dir, worker))).start()
        # Everything loaded at start (aiortc, aiohttp, numpy, the app) is moved out of the
        # collector's reach: a full collection over it stalls the event loop, and with it every
        # call's 20 ms pacing, for ~200 ms on this machine class.
        gc.freeze()
        announce_config(config)  # which media path this process's calls use (MEDIA_PATH)
        shown_host = "localhost" if config.host in ("0.0.0.0", "::") else config.host
        logger.info("gateway ready: %s://%s:%d (upstream: %s%s)", "https" if tls else "http", shown_host,
                    config.port, config.resolved_upstream, f", worker {worker}" if worker is not None else "")
        await stop.wait()
        gateway = app[STATE_KEY]
        gateway.draining = True  # new calls get 503 from now on
        logger.info("shutting down: %d call(s) may finish within %.0f s", len(gateway.calls), config.drain_timeout_s)
        await gateway.calls.drain(config.drain_timeout_s)


def main(argv: Sequence[str] | None = None) -> None:
    follow_parent()  # a worker ends with its supervisor, even one killed outright
    try:
        config = load_config(argv)
    except ConfigError as exc:
        print(f"realtime-gateway: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    setup_logging(config.log_level)
    loop_factory = None
    if config.event_loop == "uvloop":
        try:
            import uvloop
            loop_factory = uvloop.new_event_loop
        except ImportError:
            logger.warning("uvloop is not installed: using asyncio's event loop")
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(serve(config, list(sys.argv[1:] if argv is None else argv)))
    except ConfigError as exc:  # found while starting (e.g. an unsafe RUNTIME_DIR)
        print(f"realtime-gateway: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except WorkerCrashLoop as exc:  # logged with its cause by the supervisor
        logger.error("gateway stopped: %s", exc)
        raise SystemExit(1) from None
    except EngineStartError as exc:
        logger.error("%s", exc)
        raise SystemExit(1) from None
    except OSError as exc:
        logger.error("cannot serve on %s:%d: %s", config.host, config.port, exc)
        raise SystemExit(1) from None
