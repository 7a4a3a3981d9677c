"""When a worker process that died is replaced, and when the gateway stops replacing them.

Sans-I/O: the supervisor (``server/worker_pool.py``) watches its processes and sleeps; this
object only decides.

Calling contract: :meth:`WorkerRestarts.died` each time a worker exits while the gateway is not
stopping, with the worker's index and ``now``; it answers the seconds to wait before starting its
replacement, or ``None`` when the gateway is in a crash loop — more than ``max_restarts`` deaths
(of any workers) within ``window_s`` — and must stop. ``max_restarts`` 0 means a dying worker
stops the gateway. A worker that keeps dying waits longer each time (``backoff_s`` doubled per
death of that worker within the window, at most :data:`MAX_BACKOFF_S`), so a crash at start-up
does not spin; one death after a long quiet time is replaced after ``backoff_s``.
"""

from __future__ import annotations

import collections

MAX_BACKOFF_S = 30.0


class WorkerRestarts:
    def __init__(self, max_restarts: int, window_s: float, backoff_s: float) -> None:
        self.max_restarts = max_restarts
        self.window_s = window_s
        self._backoff_s = backoff_s
        self._deaths: collections.deque[tuple[float, int]] = collections.deque()  # (when, worker)
        self.replaced: collections.Counter[int] = collections.Counter()  # worker → replacements so far

    def died(self, worker: int, now: float) -> float | None:
        """Worker ``worker`` exited at ``now``: seconds until its replacement starts, or None to stop."""
        self._deaths.append((now, worker))
        while self._deaths and self._deaths[0][0] < now - self.window_s:
            self._deaths.popleft()
        if len(self._deaths) > self.max_restarts:
            return None
        self.replaced[worker] += 1
        recent = sum(1 for _, which in self._deaths if which == worker)
        return min(self._backoff_s * 2.0 ** (recent - 1), MAX_BACKOFF_S)

    @property
    def recent_deaths(self) -> int:
        """Deaths counted in the current window (what a crash-loop log line reports)."""
        return len(self._deaths)
