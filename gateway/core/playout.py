"""What the outbound track will play next, and how much of each reply has been played.

Sans-I/O: no clock, no asyncio. The conversation core enqueues the model's 24 kHz audio per
item; the outbound track pulls one 20 ms, 48 kHz frame per tick. The ledger of samples played
per item is what a truncate's ``audio_end_ms`` comes from after a barge-in.

Upstreams send audio faster than real time, so a long reply waits here. Each delta is its own
chunk (enqueueing costs the delta, never the backlog), and at most ``max_queued_s`` of audio
waits: deltas beyond it are dropped, logged once per response and counted in
:attr:`Playout.dropped_s`, and never enter the item's ledger (a truncate stays within what
could be heard).
"""

from __future__ import annotations

import collections
import enum
import logging
from dataclasses import dataclass, field

import numpy as np

from ..media.resample import Upsampler
from .audio_format import WEBRTC_FRAME, WEBRTC_RATE

logger = logging.getLogger(__name__)

SILENCE = np.zeros(WEBRTC_FRAME, np.int16)
SILENCE.flags.writeable = False


class Transition(enum.Enum):
    """A change in what the browser hears, reported to the core as the track plays."""

    STARTED = "started"  # first frame of a response's audio went out
    STOPPED = "stopped"  # the response is complete and its last frame went out


@dataclass
class PlayedItem:
    """Audio of one assistant item: how much arrived and how much was played (48 kHz samples)."""

    item_id: str
    response_id: str
    content_index: int = 0
    received: int = 0
    played: int = 0

    @property
    def received_ms(self) -> int:
        return self.received * 1000 // WEBRTC_RATE

    @property
    def played_ms(self) -> int:
        return self.played * 1000 // WEBRTC_RATE


@dataclass(slots=True)
class _Chunk:
    item: PlayedItem
    pcm: np.ndarray
    offset: int = 0
    arrived_at: float | None = None  # set when it arrived to an empty queue: its wait is ours alone


@dataclass
class Frame:
    pcm: np.ndarray
    response_id: str | None  # None for silence
    transitions: list[tuple[Transition, str]] = field(default_factory=list)


class Playout:
    """Queue of model audio awaiting playback, plus per-item played/received accounting."""

    def __init__(self, max_queued_s: float = 120.0) -> None:
        self._queue: collections.deque[_Chunk] = collections.deque()
        self._max_queued = int(max_queued_s * WEBRTC_RATE)
        self._queued = 0  # samples waiting in the queue
        self._overflowed: str | None = None  # the response whose dropped audio was logged
        self.dropped_samples = 0  # audio refused because the queue was full (48 kHz samples)
        self._upsampler = Upsampler()
        self._items: dict[str, PlayedItem] = {}
        self._playing: str | None = None  # response id currently audible
        self._complete: set[str] = set()  # responses whose audio will not grow any more
        self.added_latencies: list[float] = []  # arrival → first frame, for audio that found the queue idle

    @property
    def playing_response(self) -> str | None:
        return self._playing

    @property
    def is_active(self) -> bool:
        """True while a response is audible or has audio waiting."""
        return self._playing is not None or bool(self._queue)

    @property
    def has_queued_audio(self) -> bool:
        return bool(self._queue)

    @property
    def queued_s(self) -> float:
        return self._queued / WEBRTC_RATE

    @property
    def dropped_s(self) -> float:
        return self.dropped_samples / WEBRTC_RATE

    def enqueue(self, response_id: str, item_id: str, pcm24: np.ndarray, content_index: int = 0,
                arrived_at: float | None = None) -> bool:
        """Add 24 kHz int16 audio of ``item_id`` (resampled here, continuous across deltas);
        False when it was dropped because ``max_queued_s`` of audio is already waiting."""
        if self._queued + 2 * len(pcm24) > self._max_queued:
            self.dropped_samples += 2 * len(pcm24)
            if self._overflowed != response_id:
                self._overflowed = response_id
                logger.warning("playout queue full (%.0f s waiting): dropping audio of %s", self.queued_s,
                               response_id)
            return False
        item = self._items.get(item_id)
        if item is None:
            item = self._items[item_id] = PlayedItem(item_id, response_id, content_index)
        pcm = self._upsampler.process(pcm24)
        item.received += len(pcm)
        self._queued += len(pcm)
        self._queue.append(_Chunk(item, pcm, arrived_at=None if self._queue else arrived_at))
        return True

    def complete(self, response_id: str) -> list[tuple[Transition, str]]:
        """No more audio will come for ``response_id``; report STOPPED now if it already drained."""
        if self._playing == response_id and not self._queue:
            return self._stop()
        if self._playing == response_id or any(c.item.response_id == response_id for c in self._queue):
            self._complete.add(response_id)
        return []

    def next_frame(self, now: float = 0.0) -> Frame:
        """The next 20 ms to send: model audio if any is queued, else silence."""
        if not self._queue:
            return Frame(SILENCE, None, self._stop() if self._playing in self._complete else [])
        out = np.empty(WEBRTC_FRAME, np.int16)
        filled = 0
        transitions: list[tuple[Transition, str]] = []
        response_id: str | None = None
        while filled < WEBRTC_FRAME and self._queue:
            chunk = self._queue[0]
            if chunk.item.response_id != self._playing:
                if self._playing is not None and filled:
                    break  # never mix two responses in one frame
                if self._playing is not None:
                    transitions += self._stop()
                self._playing = chunk.item.response_id
                transitions.append((Transition.STARTED, self._playing))
            response_id = self._playing
            if chunk.arrived_at is not None:
                self.added_latencies.append(now - chunk.arrived_at)
                chunk.arrived_at = None
            take = min(WEBRTC_FRAME - filled, len(chunk.pcm) - chunk.offset)
            out[filled:filled + take] = chunk.pcm[chunk.offset:chunk.offset + take]
            chunk.offset += take
            chunk.item.played += take
            filled += take
            self._queued -= take
            if chunk.offset == len(chunk.pcm):
                self._queue.popleft()
        out[filled:] = 0
        if not self._queue and self._playing in self._complete:
            transitions += self._stop()
        return Frame(out, response_id, transitions)

    def flush(self) -> list[PlayedItem]:
        """Drop everything queued at once; returns the items that were audible or waiting."""
        touched = {c.item.item_id: c.item for c in self._queue}
        touched.update((i.item_id, i) for i in self._items.values() if i.response_id == self._playing)
        self._queue.clear()
        self._queued = 0
        self._upsampler.reset()
        self._playing = None
        self._complete.clear()
        self._items.clear()
        return list(touched.values())

    def _stop(self) -> list[tuple[Transition, str]]:
        """The audible response ended: report it and drop its ledger (nothing left to truncate)."""
        stopped, self._playing = self._playing, None
        if stopped is None:
            return []
        self._complete.discard(stopped)
        for item_id in [i for i, it in self._items.items() if it.response_id == stopped]:
            del self._items[item_id]
        return [(Transition.STOPPED, stopped)]
