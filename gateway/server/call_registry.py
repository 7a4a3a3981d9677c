"""The calls alive in this process: admission, lookup, and ownership of each call's task.

A call's slot is held in the gateway-wide :class:`~.admission.SharedAdmission` (``MAX_CALLS``,
``MAX_CALLS_PER_CLIENT`` count every worker's calls) from :meth:`CallRegistry.reserve` until the
call ends. The registry also counts each browser connection's remote candidates (offer and
trickle together, at most :data:`~gateway.webrtc.sdp.MAX_CANDIDATES`).
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import logging
import secrets
from collections.abc import Iterator
from typing import Any

from ..core.errors import BadRequest, NotFound, Unauthorized
from ..core.events import error_event
from ..webrtc.sdp import MAX_CANDIDATES
from .admission import LocalAdmission, SharedAdmission
from .call import Call, CallSummary
from .metrics import GatewayMetrics

logger = logging.getLogger(__name__)


def new_call_id(prefix: str = "rtc_") -> str:
    return f"{prefix}{secrets.token_hex(12)}"


class CallRegistry:
    def __init__(self, admission: SharedAdmission | None = None, metrics: GatewayMetrics | None = None) -> None:
        self._admission = admission or LocalAdmission(max_calls=100, max_calls_per_client=0)
        self._metrics = metrics or GatewayMetrics()
        self._calls: dict[str, Call] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._candidates: dict[str, int] = {}  # call id → remote candidates of its current connection
        self._lingering: set[asyncio.Future[Any]] = set()  # peer connections still closing
        self.recent: collections.deque[tuple[str, CallSummary]] = collections.deque(maxlen=100)

    def __len__(self) -> int:
        return len(self._calls)

    def __iter__(self) -> Iterator[Call]:
        """The live calls (a snapshot: calls may end while the caller iterates)."""
        return iter(list(self._calls.values()))

    async def reserve(self, call_id: str, client: str) -> None:
        """Hold a slot for ``client``'s call being set up: 503 when the gateway is full, 429 when
        this client has ``MAX_CALLS_PER_CLIENT`` calls already."""
        await self._admission.reserve(call_id, client)

    async def release(self, call_id: str) -> None:
        """Give back the slot of a call whose set-up failed."""
        await self._admission.release(call_id)

    def start(self, call: Call, candidates: int = 0) -> None:
        """Turn a reservation into a running call; the registry owns its task (and its slot) from
        now on. ``candidates``: how many its offer brought."""
        self._calls[call.id] = call
        self._candidates[call.id] = candidates
        self._tasks[call.id] = asyncio.create_task(self._run(call), name=f"call-{call.id}")
        self._metrics.calls_started.inc()
        self._metrics.active_calls.inc()

    def new_connection(self, call: Call, candidates: int) -> None:
        """The call resumed on a new browser connection, whose offer brought ``candidates``."""
        self._candidates[call.id] = candidates

    def add_candidates(self, call: Call, count: int) -> None:
        """Count trickled candidates against the connection's limit (400 past it)."""
        total = self._candidates.get(call.id, 0) + count
        if total > MAX_CANDIDATES:
            raise BadRequest(f"A connection may bring at most {MAX_CANDIDATES} ICE candidates (offer and "
                             "trickle together).", code="too_many_candidates")
        self._candidates[call.id] = total

    def by_resume_token(self, token: str) -> Call:
        for call in self._calls.values():
            if hmac.compare_digest(call.resume_token, token):
                return call
        raise Unauthorized("The resume token is not valid, or its call has ended; start a new call.",
                           code="invalid_resume_token")

    def ended_recently(self, call_id: str) -> bool:
        """Whether ``call_id`` is among the last calls that ended here (``recent``)."""
        return call_id not in self._calls and any(ended == call_id for ended, _ in self.recent)

    def get(self, call_id: str) -> Call:
        call = self._calls.get(call_id)
        if call is None:
            raise NotFound(f"No active call with id '{call_id}'.", code="call_not_found")
        return call

    async def _run(self, call: Call) -> None:
        try:
            summary = await call.run()
            logger.info("%s", summary.log_line(), extra={"call_id": call.id})
            self._metrics.call_ended(summary)
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
            self._candidates.pop(call.id, None)
            try:
                await self._admission.release(call.id)
            except Exception:  # the store is gone (shutting down): the supervisor reclaims the slot
                logger.warning("could not release the call's admission slot", exc_info=True)

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
