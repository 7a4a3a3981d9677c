"""When to dial the upstream again after its session ended, and when to give up.

Sans-I/O: the link (``realtime/upstream_link.py``) asks and sleeps; this object only decides.

Calling contract: :meth:`ReconnectPolicy.connected` after every connect that succeeded;
:meth:`ReconnectPolicy.lost` when an open session ended; :meth:`ReconnectPolicy.failed` after a
connect that failed, which answers the seconds to wait before the next try, or ``None`` to give
up. A first connect that fails gives up at once: a call that never had a session has nothing to
keep alive, and its caller should hear why now.
"""

from __future__ import annotations

BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 4.0, 8.0)


class ReconnectPolicy:
    def __init__(self, give_up_after_s: float, backoff_s: tuple[float, ...] = BACKOFF_S) -> None:
        self._give_up_after_s = give_up_after_s
        self._backoff_s = backoff_s
        self._attempt = 0
        self._give_up_at: float | None = None

    def connected(self) -> None:
        self._attempt = 0
        self._give_up_at = None

    def lost(self, now: float) -> None:
        """An open session ended at ``now``: retries may go on for ``give_up_after_s``."""
        self._give_up_at = now + self._give_up_after_s

    def failed(self, now: float, *, fatal: bool) -> float | None:
        """A connect failed: seconds until the next try, or None when the call must end."""
        if fatal or self._give_up_at is None or now > self._give_up_at:
            return None
        delay = self._backoff_s[min(self._attempt, len(self._backoff_s) - 1)]
        self._attempt += 1
        return delay
