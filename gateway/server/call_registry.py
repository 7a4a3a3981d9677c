"""The calls alive in this process: admission, lookup, and ownership of each call's task."""

from __future__ import annotations

import asyncio
import collections
import hmac
import logging
import secrets
from collections.abc import Iterator
from typing import Any

from ..core.errors import AtCapacity, NotFound, Unauthorized
from ..core.events import error_event
from .call import Call, CallSummary
from .metrics import GatewayMetrics

logger = logging.getLogger(__name__)


def new_call_id(prefix: str = "rtc_") -> str:
    return f"{prefix}{secrets.token_hex(12)}"


class CallRegistry:
    def __init__(self, max_calls: int, metrics: GatewayMetrics | None = None) -> None:
        self._max_calls = max_calls
        self._metrics = metrics or GatewayMetrics()
        self._calls: dict[str, Call] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._lingering: set[asyncio.Future[Any]] = set()  # peer connections still closing
        self.recent: collections.deque[tuple[str, CallSummary]] = collections.deque(maxlen=100)
        self._reserved = 0

    def __len__(self) -> int:
        return len(self._calls)

    def __iter__(self) -> Iterator[Call]:
        """The live calls (a snapshot: calls may end while the caller iterates)."""
        return iter(list(self._calls.values()))

    def reserve(self) -> None:
        """Hold a slot while a call is being set up, or refuse with 503 when full."""
        if len(self._calls) + self._reserved >= self._max_calls:
            raise AtCapacity("The gateway is at capacity; try again shortly.", headers={"Retry-After": "5"})
        self._reserved += 1

    def release(self) -> None:
        self._reserved -= 1

    def start(self, call: Call) -> None:
        """Turn a reservation into a running call; the registry owns its task from now on."""
        self._reserved -= 1
        self._calls[call.id] = call
        self._tasks[call.id] = asyncio.create_task(self._run(call), name=f"call-{call.id}")
        self._metrics.calls_started.inc()
        self._metrics.active_calls.inc()

    def by_resume_token(self, token: str) -> Call:
        for call in self._calls.values():
            if hmac.compare_digest(call.resume_token, token):
                return call
        raise Unauthorized("The resume token is not valid, or its call has ended; start a new call.",
                           code="invalid_resume_token")

    def get(self, call_id: str) -> Call:
        call = self._calls.get(call_id)
        if call is None:
            raise NotFound(f"No active call with id '{call_id}'.", code="call_not_found")
        return call

    async def _run(self, call: Call) -> None:
        try:
            summary = await call.run()
            logger.info("%s", summary.log_line(), extra={"call_id": call.id})
            self._metrics.call_ended(summary.reason)
            if "p50" in summary.jitter_buffer_ms:
                self._metrics.jitter_buffer_delay.observe(summary.jitter_buffer_ms["p50"] / 1000)
            self.recent.append((call.id, summary))
            if call.lingering_close is not None:
                self._lingering.add(call.lingering_close)
                call.lingering_close.add_done_callback(self._lingering.discard)
        finally:
            self._metrics.active_calls.dec()
            del self._calls[call.id]
            del self._tasks[call.id]

    async def drain(self, timeout: float) -> None:
        """Tell every call the gateway is going away, then give them ``timeout`` s to finish."""
        for call in self._calls.values():
            call.notify(error_event(f"The gateway is shutting down; this call ends within {timeout:.0f} s.",
                                    code="gateway_shutting_down", type_="server_error"))
        tasks = list(self._tasks.values())
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    async def close(self, reason: str = "shutdown") -> None:
        """End every call and wait until each has freed what it holds."""
        for call in list(self._calls.values()):
            call.end(reason)
        tasks = list(self._tasks.values())
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._lingering:
            _, pending = await asyncio.wait(set(self._lingering), timeout=3.0)
            for future in pending:
                future.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
