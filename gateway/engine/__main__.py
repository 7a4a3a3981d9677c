"""``python -m gateway.engine``: serve the Realtime protocol at ws://HOST:PORT/v1/realtime.

``GET /healthz`` answers 503 while the models load and 200 once the engine can take sessions.
All settings: ``python -m gateway.engine --help``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from ..server.parent_death import follow_parent
from .config import EngineConfigError, load_engine_config


def main() -> None:
    follow_parent()  # the engine ends with the gateway that started it, even one killed outright
    try:
        config = load_engine_config()
    except EngineConfigError as exc:
        print(f"engine: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO").upper(),
                        format="%(asctime)s %(levelname)-7s [engine] %(name)s: %(message)s")
    logging.getLogger("websockets.server").setLevel(logging.WARNING)  # one line per health poll otherwise
    # Process-wide settings, before any model library starts its threads (they inherit both):
    # never reach for a model hub; below the gateway in CPU priority; OpenMP threads (Whisper's
    # CTranslate2) sleep instead of spinning when idle, leaving the core to others.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if config.nice:
        os.nice(config.nice)
    from .models import ModelError
    from .server import EngineServer

    try:
        asyncio.run(EngineServer(config).serve_forever())
    except ModelError as exc:
        logging.getLogger("gateway.engine").error("cannot start: %s", exc)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        pass


main()
