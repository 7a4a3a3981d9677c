"""Pytest fixtures for tests that need the bed; tests/netbed/conftest.py re-exports them here, and a
test elsewhere can do the same (``from tests.netbed.fixtures import netbed``) or use ``NetBed`` directly."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .bed import NetBed
from .system import require


@pytest.fixture
def netbed() -> Iterator[NetBed]:
    """A fresh two-host bed (``client``, ``server``), clean link; skipped, with the reason, without root."""
    require()
    with NetBed() as bed:
        yield bed
