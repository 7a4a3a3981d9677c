"""What every native call of one gateway app (one worker process) shares: the pacer and the call heap.

One :class:`SharedMedia` per app, made with the app's other per-worker state
(:class:`~gateway.server.signaling.Gateway`) and handed down to each call's
:class:`~gateway.media.native.call_media.NativeCallMedia` (Gateway → Call → BrowserPeer). It is
the owner of both: :meth:`context`, in the app's ``cleanup_ctx``, makes the pacer on the app's
event loop at start-up and, at cleanup (after the calls were closed), cancels the pacer's pending
timer and any reclaim the heap still had waiting — nothing of either runs on the loop afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from .heap import CallHeap
from .pacer import Pacer


class SharedMedia:
    def __init__(self, heap: CallHeap | None = None) -> None:
        self.heap = heap or CallHeap()
        self._pacer: Pacer | None = None

    @property
    def pacer(self) -> Pacer:
        """The worker's pacer; there is one between :meth:`start` and :meth:`close`."""
        if self._pacer is None:
            raise RuntimeError("the shared media path is not started (SharedMedia.start / the app's cleanup_ctx)")
        return self._pacer

    @property
    def started(self) -> bool:
        return self._pacer is not None

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Make the pacer on ``loop`` (the running loop by default); idempotent."""
        if self._pacer is None:
            self._pacer = Pacer(loop or asyncio.get_running_loop())

    def close(self) -> None:
        """Stop the pacer and cancel a waiting heap reclaim (idempotent)."""
        if self._pacer is not None:
            self._pacer.close()
            self._pacer = None
        self.heap.close()

    async def context(self, app: object) -> AsyncIterator[None]:
        """For ``app.cleanup_ctx``: started while the app serves, closed at its cleanup."""
        self.start()
        try:
            yield
        finally:
            self.close()
