"""Driving a :class:`~gateway.media.jitter_buffer.JitterBuffer` over a simulated link, as the
receive path does: push each packet at its arrival, pop at every arrival and deadline.

Shared by the jitter-buffer and RED tests and by ``bench/burst_sim.py`` / ``bench/codec_costs.py``,
so a simulation and the gateway drive the buffer the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import SimpleNamespace

from gateway.media import red
from gateway.media.jitter_buffer import JitterBuffer
from gateway.media.jitter_types import Release

FRAME_48K = 960  # RTP timestamp step of a 20 ms Opus frame


def drive(buffer: JitterBuffer, arrivals: list[tuple[float, int]],
          push: Callable[[int, float], None]) -> Iterator[tuple[float, list[Release]]]:
    """``arrivals``: (time, sequence number) sorted by time; ``push(seq, now)`` hands one packet to
    the buffer. Yields (now, what the buffer released then) up to the last arrival."""
    now, position = 0.0, 0
    while position < len(arrivals):
        deadline = buffer.deadline()
        now = max(now, min(arrivals[position][0], deadline if deadline is not None else float("inf")))
        while position < len(arrivals) and arrivals[position][0] <= now:
            push(arrivals[position][1], now)
            position += 1
        yield now, buffer.pop(now)


def push_red(buffer: JitterBuffer, payload: bytes, seq: int, now: float, fmtp: dict[str, object]) -> None:
    """One RED packet numbered ``seq`` (timestamp ``960 * seq``), split as the receive path does:
    its copies first, then its primary frame."""
    split = red.split_packet(SimpleNamespace(payload=payload, sequence_number=seq, timestamp=FRAME_48K * seq,
                                             payload_type=None), fmtp)
    assert split is not None
    primary, copies = split
    for copy in copies:
        buffer.push(copy.sequence, copy.timestamp, copy.payload, now, redundant=True)
    buffer.push(seq, FRAME_48K * seq, primary.payload, now)
