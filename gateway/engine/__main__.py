"""``python -m gateway.engine``: serve the Realtime protocol at ws://HOST:PORT/v1/realtime."""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from .config import EngineConfigError, load_engine_config
from .models import ModelError


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a model hub
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO").upper(),
                        format="%(asctime)s %(levelname)-7s [engine] %(name)s: %(message)s")
    try:
        config = load_engine_config()
    except EngineConfigError as exc:
        print(f"engine: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    from .server import EngineServer

    try:
        asyncio.run(EngineServer(config).serve_forever())
    except ModelError as exc:
        logging.getLogger("gateway.engine").error("%s", exc)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        pass


main()
