"""Fixtures of the server tests (tests/conftest.py has the in-process gateway factory)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fake_upstream import FakeRealtimeServer
from tests.server.page_client import GatewayProcess, start_gateway_process


@pytest.fixture
async def two_worker_gateway(fake_upstream: FakeRealtimeServer, tmp_path: Path) -> AsyncIterator[GatewayProcess]:
    """``python -m gateway --workers 2`` with the rate limit out of the way; it must exit cleanly."""
    gateway = await start_gateway_process(fake_upstream, tmp_path, "--rate-limit", "100000")
    try:
        yield gateway
    finally:
        assert gateway.stop() == 0
