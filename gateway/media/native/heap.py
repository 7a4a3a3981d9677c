"""Full garbage collections off the media path: a call's set-up heap is frozen once its media runs.

CPython's cycle collector stops the world, and a full (generation 2) collection walks every
tracked object outside the frozen start-up heap (``gateway.cli`` freezes that once it serves).
Each call adds thousands: aiortc's peer connection, ICE, DTLS, SCTP and the call's own state.
With 20 calls on one core one such collection stopped the event loop for ~200 ms — a gap in
every call's audio both ways, sporadic because CPython runs one only when the old generation
has grown by a quarter. ``gc.freeze()`` (O(1): the generations are spliced onto the frozen
list) once a call's media runs takes what its set-up made out of the collector's reach, so a
full collection walks only what was made since: milliseconds.

The price: cyclic garbage among frozen objects (a call that ended) is not collected while it is
frozen. So the frozen heap is handed back (unfreeze, collect, freeze: one full pause, as before)
when that stalls no call — none is live — once ``idle_after`` calls have ended, or, under
constant load, after ``reclaim_after`` ended calls: what ended calls leave frozen stays bounded
(~1 MB each), and full pauses come once per ``reclaim_after`` hang-ups instead of whenever the
heap grew by a quarter. A reclaim waits ``delay_s`` after the hang-up that asks for it, so the
call's own teardown is garbage by then (and is checked again: a call may have started since).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

logger = logging.getLogger(__name__)
RECLAIM_AFTER = 32  # ended calls whose frozen garbage may wait for a reclaim under load
IDLE_AFTER = 4  # ended calls worth a reclaim once no call is live (it pauses nobody then)
RECLAIM_DELAY_S = 5.0  # after the hang-up that asks for it: the call's teardown is garbage by then


class CallHeap:
    """The calls of one worker (its :class:`~gateway.media.native.shared_media.SharedMedia` owns
    it, like the pacer): how many are live, how many ended since the last reclaim."""

    def __init__(self, *, reclaim_after: int = RECLAIM_AFTER, idle_after: int = IDLE_AFTER,
                 delay_s: float = RECLAIM_DELAY_S, freeze: bool = True) -> None:
        """Outside an event loop (or with ``delay_s=0``) a reclaim runs inside the hang-up that asks
        for it. ``freeze=False`` only counts: for a call no worker's heap sees (the embedding
        API's ``attach``), since only a heap that sees every call can hand a frozen heap back."""
        self._freeze = freeze
        self._reclaim_after = reclaim_after
        self._idle_after = idle_after
        self._delay_s = delay_s
        self._timer: asyncio.TimerHandle | None = None
        self.live = 0
        self.ended = 0  # since the last reclaim
        self.freezes = 0
        self.reclaims = 0
        self.last_reclaim_ms = 0.0

    def call_started(self) -> None:
        """A call's media runs: what its set-up allocated goes out of the collector's reach."""
        self.live += 1
        if self._freeze:
            self.freezes += 1
            gc.freeze()

    def call_ended(self) -> None:
        self.live = max(0, self.live - 1)
        self.ended += 1
        if not self._freeze or not self._due() or self._timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or self._delay_s <= 0:
            self.reclaim()
        else:  # once the call's own teardown is done, if still due then
            self._timer = loop.call_later(self._delay_s, self._reclaim_if_due)

    def close(self) -> None:
        """Cancel a reclaim still waiting for its delay (idempotent). For the owner, at shutdown."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _due(self) -> bool:
        return self.ended >= self._reclaim_after or (self.live == 0 and self.ended >= self._idle_after)

    def _reclaim_if_due(self) -> None:
        self._timer = None
        if self._due():
            self.reclaim()

    def reclaim(self) -> None:
        """Let the collector see the whole heap once, free the ended calls' cycles, freeze again."""
        started = time.perf_counter()
        frozen = gc.get_freeze_count()
        gc.unfreeze()
        collected = gc.collect()
        gc.freeze()
        self.last_reclaim_ms = (time.perf_counter() - started) * 1000
        self.reclaims += 1
        logger.info("heap reclaimed after %d ended calls (%d live): %d objects were frozen, %d collected, "
                    "%.0f ms", self.ended, self.live, frozen, collected, self.last_reclaim_ms)
        self.ended = 0
