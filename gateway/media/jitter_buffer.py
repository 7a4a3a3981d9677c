"""Receive-side audio jitter buffer for a listener that is a model, not a loudspeaker.

A loudspeaker needs samples at a steady pace, so its buffer delays *every* packet by a target
delay. The Realtime upstream consumes a stream: it needs every 20 ms of the caller's timeline,
in order, soon, but not at an exact pace. So here a packet that arrives in order leaves at once
(zero added delay on a clean network), and the adaptive target delay — :attr:`JitterBuffer.wait`
— is only spent when something is missing:

- **Gap** (a later packet is here, the next one is not): wait for the missing one (reordering)
  until ``wait`` has passed, then rebuild it from the next packet's in-band FEC if that packet is
  here, else conceal it. A packet that comes after its frame was rebuilt is *late* and dropped.
  With RED, a gap also waits for the packets within the copies' reach that would still rebuild
  it (a copy of it, or a copy whose FEC holds it) until they are as late as any packet has come
  lately (the transit spread, below): after a burst, the packet carrying the copies is often
  overtaken by the one after it. Once the packet after them is here, that wait is short.
- **Stall** (nothing is here): once the next packet is ``2 frames + wait`` overdue, conceal on
  the frame clock so the upstream keeps a continuous cadence (its VAD keeps measuring time).
  With RED the stall starts as many frames later as the copies reach back (the RED distance
  seen): two packets lost in a row are both rebuilt whole or from FEC once the next one brings
  its copy (the FEC inside the copy rebuilds the frame before it), and a frame inserted before
  it came would only have stretched the speech. For the same reason the stall waits out the
  spread of transit times seen (how much later than the earliest packets have come lately,
  from their RTP timestamps), not just ``wait``: with RED, copies fill reordered packets before
  they show as late, so ``wait`` stays short while the packet ending a burst may come 40 ms
  behind the one before it. Inserted frames that a burst's lost packets need anyway are not
  wasted: they stand for the frames nothing rebuilds (a burst of ``k`` costs ``k − 2``).
  These frames are *inserted*: they use no sequence number, so a packet that was only delayed is
  still played when it comes (the stream stretches by a frame instead of losing a real one),
  while a burst that was really lost is not concealed twice. A frame whose time passed while
  the event loop was busy elsewhere is not invented late (the packets are likely queued).
- **Resend** (``nack``: the sender answers RFC 4585 NACKs): each gap's missing packets are
  asked for once (:meth:`nacks_due`), as soon as the gap is older than the reordering seen (a
  packet only overtaken is not asked for), and the gap waits
  past ``wait`` while the resend may still come (:class:`~gateway.media.nack.NackPolicy`,
  bounded by its ``max_wait``).
- **Timestamp jump** without a sequence gap (DTX, silence suppression): the skipped time is
  filled with concealment (libopus fades it to silence), minus what a stall already inserted,
  so a second of the caller's timeline stays a second upstream.

Whatever the numbering claims, the upstream never receives audio faster than real time: every
frame released is paid for from an :class:`~gateway.media.audio_budget.AudioBudget` (wall-clock
time plus a small burst). Lying numbering — sequence or timestamp jumps that would be concealed
by the second, floods of well-numbered packets, packets holding more audio than their timestamps
say — gets what the clock can pay for and no more; the rest is skipped (``stats.over_budget``),
invented frames before real ones, a long unaffordable gap at once rather than frame by frame.
Delayed packets that come bunched after a bridged stall still all play (borrowed against the
stall's frames, repaid by skipping later invented ones). And a stall is bridged for
``max_stall_s`` at most: a browser that stopped sending costs nothing upstream until its next
packet, which leaves at once.

``wait`` follows the lateness actually seen — how long after they were first missed reordered
or delayed packets still came — over the last ``memory_s`` seconds, plus a margin, bounded by
``min_wait``/``max_wait``: 10 ms on a clean network, growing under jitter, back down once the
network has been calm for ``memory_s``.

Sans-I/O: times are passed in; :meth:`JitterBuffer.deadline` says when to call :meth:`pop`
if no packet arrives first.
"""

from __future__ import annotations

import collections
from collections.abc import Callable

from ..core.audio_format import WEBRTC_RATE
from .audio_budget import AudioBudget
from .jitter_types import JitterStats, Origin, Release, Spread, StoredPacket, WindowMax
from .nack import NackPolicy
from .rtp import extend_sequence

__all__ = ["JitterBuffer", "JitterStats", "Origin", "Release"]

TS_MOD = 1 << 32
DEFAULT_STEP = 960  # 20 ms
MAX_STEP = 5760  # 120 ms: the longest Opus packet
MAX_FILL_FRAMES = 50  # a timestamp jump longer than 1 s is a discontinuity, not silence
MAX_COPY_REACH = 2  # RED distance followed (gateway.media.red.MAX_DISTANCE)


class JitterBuffer:
    def __init__(self, *, min_wait: float = 0.01, max_wait: float = 0.12, margin: float = 0.005,
                 memory_s: float = 5.0, resync_after: int = 100, budget: AudioBudget | None = None,
                 max_stall_s: float = 2.0, duration: Callable[[bytes], int | None] | None = None,
                 nack: NackPolicy | None = None, fec: Callable[[bytes], bool] | None = None) -> None:
        """``budget``: what may leave per wall-clock second (kept across :meth:`reset`);
        ``max_stall_s``: how long a stall is bridged with concealment; ``duration``: the 48 kHz
        samples a payload decodes to (None: unknown), so a packet is paid for by what it holds;
        ``nack``: the sender resends on NACK (see :meth:`nacks_due`), so a gap may wait for it;
        ``fec``: whether a payload carries in-band FEC for the frame before it (None: assume so).
        libopus conceals when asked for FEC a packet lacks (silence, unvoiced frames), so such a
        frame is concealment: counted as such, and a frame a stall inserted stands for it."""
        self.min_wait = min_wait
        self.max_wait = max_wait
        self.margin = margin
        self.resync_after = resync_after
        self.budget = budget or AudioBudget()
        self.max_stall_s = max_stall_s
        self._duration = duration
        self._fec = fec
        self.nack = nack
        self.stats = JitterStats()
        self._lateness = WindowMax(memory_s)
        self._packets: dict[int, StoredPacket] = {}  # extended sequence number → packet
        self._next: int | None = None  # extended sequence number due next
        self._highest: int | None = None
        self._first: int | None = None
        self._numbered_before = 0  # packets numbered by the sender before the last resync/reset
        self._step = DEFAULT_STEP
        self._played_ts: int | None = None  # RTP timestamp of the last frame released in sequence
        self._last_arrival = 0.0
        self._now = 0.0
        self._stalled = 0  # frames inserted since the last arrival
        self._credit = 0  # inserted frames not yet matched by a missing packet or a timestamp jump
        self._stretch_s = 0.0  # inserted audio the packets ending a stall make redundant: theirs to borrow
        self._bunch_until = 0.0  # …until then (they come bunched behind the first one)
        self._overdue_since: float | None = None  # when the packet due next was first missed
        self._given_up: dict[int, tuple[float, float]] = {}  # seq rebuilt without its packet → (when, wait)
        self._newest: tuple[int, int] | None = None  # (sequence, timestamp) of the newest packet
        self._candidate: tuple[int, int, bytes, float] | None = None  # a far jump awaiting confirmation
        self._from_copy: collections.deque[int] = collections.deque(maxlen=64)  # seqs played from RED copies
        self._oldest_copy: int | None = None  # the oldest copy pushed since the last packet (RED)
        self._copy_reach = WindowMax(memory_s)  # how many packets back the sender's RED copies reach
        self._transit = Spread(memory_s)  # arrival − send time (RTP timestamp): how late packets come

    # --- input -------------------------------------------------------------------------------

    def push(self, seq: int, timestamp: int, payload: bytes, now: float, *, redundant: bool = False) -> None:
        """A packet arrived: ``seq`` and ``timestamp`` straight from its RTP header.

        ``redundant``: a copy of packet ``seq`` that a later packet carried (RED, push it before
        that packet): it only fills a gap, at once and at full quality, before FEC or concealment.
        """
        if redundant:
            self._push_copy(seq, timestamp, payload, now)
            return
        self._now = now
        self.stats.received += 1
        ext = self._extend(seq)
        if self._next is None:
            self._start(ext)
        elif abs(ext - self._next) > self.resync_after:
            # A long outage or a restarted sender if the next packet follows on; else a stray.
            candidate, self._candidate = self._candidate, (ext, timestamp, payload, now)
            if candidate is None or ext != candidate[0] + 1:
                return
            self._resync(candidate[0])
            self._store(*candidate)
        self._candidate = None
        assert self._next is not None  # set by _start or _resync above
        resent = self.nack is not None and self.nack.arrived(ext, now)
        if not resent:  # (a resend's transit holds a round trip)
            self._transit.add(now, timestamp)
        if self._oldest_copy is not None:  # the copies pushed just before were this packet's
            if 0 < ext - self._oldest_copy <= MAX_COPY_REACH:
                self._copy_reach.add(now, ext - self._oldest_copy)
            self._oldest_copy = None
        if ext < self._next:
            self._arrived_too_late(ext, now, resent)
            return
        if ext in self._packets and not self._packets[ext].redundant:  # (the packet replaces its RED copy)
            self.stats.duplicate += 1
            return
        if ext == self._next and not resent and (self._packets or self._overdue_since is not None):
            self._lateness.add(now, now - self._gap_start())  # reordered or delayed, still in time
        self._store(ext, timestamp, payload, now, resent)

    def _push_copy(self, seq: int, timestamp: int, payload: bytes, now: float) -> None:
        if self._next is None or self._highest is None:
            return  # no stream yet: the packet carrying the copy starts it
        ext = self._extend(seq)
        self._oldest_copy = ext if self._oldest_copy is None else min(self._oldest_copy, ext)
        if self._next <= ext <= self._next + self.resync_after and ext not in self._packets:
            if ext == self._next and (self._packets or self._overdue_since is not None):
                self._lateness.add(now, now - self._gap_start())  # as for the packet itself, had it come
            self._packets[ext] = StoredPacket(timestamp, payload, now, True)
            if self.nack is not None:
                self.nack.filled(ext)

    def _store(self, ext: int, timestamp: int, payload: bytes, now: float, resent: bool = False) -> None:
        newest = self._newest
        if newest is not None and ext == newest[0] + 1:
            difference = (timestamp - newest[1]) % TS_MOD
            if 0 < difference <= MAX_STEP:
                self._step = difference  # packet duration, learnt from consecutive packets
        if newest is None or ext > newest[0]:
            self._newest = (ext, timestamp)
        self._packets[ext] = StoredPacket(timestamp, payload, now, resent=resent)
        assert self._highest is not None
        if ext > self._highest:
            if self.nack is not None:
                self.nack.missing(self._highest + 1, ext - 1, self._packets, now)
            self._highest = ext
        self._last_arrival = now
        self._stalled = 0

    def _extend(self, seq: int) -> int:
        """16-bit RTP sequence → monotonically extended, wrap-around included."""
        return seq if self._highest is None else extend_sequence(seq, self._highest)

    def _start(self, ext: int) -> None:
        self._next = self._highest = self._first = ext

    def _resync(self, ext: int) -> None:
        self.stats.resyncs += 1
        self._forget()
        self._start(ext)

    def _arrived_too_late(self, ext: int, now: float, resent: bool) -> None:
        gave_up = self._given_up.pop(ext, None)
        if resent:  # a resend too slow for its frame: the NACK policy learnt from it, not the reorder wait
            self.stats.late += gave_up is not None
            return
        if gave_up is None and ext in self._from_copy:
            return  # reordered: its RED copy already played it
        if gave_up is None:  # already played from its own packet
            self.stats.duplicate += 1
            return
        self.stats.late += 1  # waiting this much longer would have saved it
        when, wait = gave_up
        self._lateness.add(now, now - when + wait)

    def reset(self) -> None:
        """A new stream (SSRC change): forget sequence state, keep statistics and learnt jitter."""
        self._forget()
        self._next = self._highest = self._first = self._candidate = None
        self._stalled = 0
        self._stretch_s = 0.0

    def _forget(self) -> None:
        self._numbered_before = self.packets_sent
        self._packets.clear()
        self._given_up.clear()
        if self.nack is not None:
            self.nack.clear()
        self._played_ts = self._overdue_since = self._newest = self._oldest_copy = None
        self._credit = 0
        self._transit.clear()

    @property
    def packets_sent(self) -> int:
        """Packets the sender numbered since the stream began (received or not)."""
        current = 0 if self._first is None or self._highest is None else self._highest - self._first + 1
        return self._numbered_before + current

    @property
    def packets_lost(self) -> int:
        """Packets that never arrived (late ones did arrive, so they are not lost)."""
        return max(0, self.packets_sent - (self.stats.received - self.stats.duplicate))

    # --- output ------------------------------------------------------------------------------

    @property
    def wait(self) -> float:
        """How long a missing packet is waited for before it is rebuilt or concealed."""
        worst = self._lateness.get(self._now)
        if worst is None:
            return self.min_wait
        return min(self.max_wait, max(self.min_wait, worst + self.margin))

    @property
    def frame_s(self) -> float:
        return self._step / WEBRTC_RATE

    def nacks_due(self, now: float) -> list[int]:
        """Sequence numbers to ask the sender for again now (RFC 4585 generic NACK), if it resends."""
        if self.nack is None:
            return []
        due = self.nack.take_due(now)
        self.stats.nacked += len(due)
        return due

    def _gap_deadline(self) -> float:
        """When the gap at the packet due next is given up on: ``wait`` after it opened, or later
        while a resend asked for may still come."""
        start = self._gap_start()
        until = start + self.wait
        in_flight = self._rebuilder_due()
        if in_flight is not None:
            until = max(until, min(in_flight, start + self.max_wait))
        if self.nack is not None and self._next is not None:
            held = self.nack.hold_until(self._next, start, self._now)
            if held is not None:
                until = max(until, held)
        return until

    def _rebuilder_due(self) -> float | None:
        """With RED: by when the packets that would still rebuild the frame due next (the next
        ones within the copies' reach: each carries a copy of it, or a copy whose FEC holds it)
        should have come if they were only overtaken: as late as any packet has come lately. None
        if none of them is missing (a copy brought by a later packet does not count: the packet
        itself carries more)."""
        reach = int(self._copy_reach.get(self._now) or 0)
        if not reach or self._next is None or not self._packets or self._newest is None:
            return None
        newest, newest_ts = self._newest
        due = None
        for ext in range(self._next + 1, min(self._next + reach + 2, newest)):
            packet = self._packets.get(ext)
            if packet is None or packet.redundant:
                expected = self._transit.latest((newest_ts - (newest - ext) * self._step) % TS_MOD, self._now)
                if expected is not None:
                    due = expected if due is None else max(due, expected)
        return due

    def _gap_start(self) -> float:
        """Since when the packet due next has been missed."""
        start = min(p.arrival for p in self._packets.values()) if self._packets else self._now
        return start if self._overdue_since is None else min(start, self._overdue_since)

    def deadline(self) -> float | None:
        """When :meth:`pop` has something to release (or a NACK is due: :meth:`nacks_due`) if no
        packet arrives before."""
        due = self._release_deadline()
        if self.nack is not None:
            ask = self.nack.next_due(self._now)
            if ask is not None and (due is None or ask < due):
                return ask
        return due

    def _release_deadline(self) -> float | None:
        if self._next is None:
            return None
        if self._packets:
            return self._last_arrival if self._next in self._packets else self._gap_deadline()
        stall_at = self._stall_at()
        return None if stall_at > self._last_arrival + self.max_stall_s else stall_at

    def _stall_at(self) -> float:
        """When the next frame of a stall is due (nothing is here): later by the RED distance, since
        the packet that ends a short stall brings the frames it missed, and by the spread of
        transit times seen (as late as packets have come lately: with RED, reordering never shows
        in ``wait``, the copies fill it), bounded by ``max_wait``."""
        reach = self._copy_reach.get(self._now) or 0
        spread = min(self.max_wait, self._transit.get(self._now) + self.margin)
        return self._last_arrival + (self._stalled + 2 + reach) * self.frame_s + max(self.wait, spread)

    def pop(self, now: float) -> list[Release]:
        """Every frame due by ``now`` that the budget can pay for, in order."""
        self._now = now
        out: list[Release] = []
        stats = self.stats
        budget = self.budget
        frame_s = self.frame_s
        while self._next is not None:
            packet = self._packets.pop(self._next, None)
            if packet is not None:
                self._fill_timestamp_jump(packet, out, now)
                if self._affords(self._held_s(packet.payload), now):
                    out.append(Release(Origin.RED if packet.redundant else Origin.PACKET, packet.payload,
                                       self._step, packet.arrival))
                    if packet.redundant:
                        stats.red += 1
                        self._from_copy.append(self._next)
                    else:
                        stats.decoded += 1
                        stats.resent += packet.resent
                    stats.delays.append(now - packet.arrival)
                else:
                    stats.over_budget += 1
                self._played_ts = packet.timestamp
                self._advance()
                continue
            if self._packets:  # a gap: wait for the missing packet, then rebuild or conceal it
                if now < self._gap_deadline():
                    break
                following = self._packets.get(self._next + 1)
                if following is not None and self._fec is not None and not self._fec(following.payload):
                    following = None  # no FEC in it: libopus would only conceal
                if following is not None:  # real audio, even if a stall already stood for its time
                    if self._affords(frame_s, now):
                        out.append(Release(Origin.FEC, following.payload, self._step, following.arrival))
                        stats.fec += 1
                        stats.delays.append(now - following.arrival)
                    else:
                        stats.over_budget += 1
                elif self._credit:
                    self._credit -= 1  # an inserted frame already stood for this one
                elif budget.take(frame_s, now, invented=True):
                    out.append(Release(Origin.CONCEAL, None, self._step, now))
                    stats.concealed += 1
                else:
                    self._skip_gap(now)
                self._given_up[self._next] = (now, self.wait)
                if len(self._given_up) > 2 * self.resync_after:
                    del self._given_up[next(iter(self._given_up))]
                if self._played_ts is not None:
                    self._played_ts = (self._played_ts + self._step) % TS_MOD
                self._advance()
                continue
            stall_at = self._stall_at()
            if now < stall_at or stall_at > self._last_arrival + self.max_stall_s:
                break  # not due yet, or the browser has been silent too long to bridge
            if self._overdue_since is None:  # the stream stalled: keep the cadence
                self._overdue_since = now - self.wait
                self._stretch_s = 0.0
            self._stalled += 1
            if now - stall_at > 2 * frame_s or budget.in_debt:
                # Not bridged: due long ago (the loop was busy; the packets are likely queued behind
                # this timer), or the stream is still ahead from an earlier stall. Either way the
                # time is left for the delayed packets to fill (the budget carries it), if they come.
                pass
            elif budget.take(frame_s, now, invented=True):
                out.append(Release(Origin.CONCEAL, None, self._step, now, inserted=True))
                stats.inserted += 1
                self._credit += 1
            else:
                stats.over_budget += 1
        return out

    def _affords(self, seconds: float, now: float) -> bool:
        """Whether real audio may leave: within the budget down to its reserve, then borrowed
        against the bridged stall it ends (its invented frames already stood for this time),
        then down to nothing."""
        budget = self.budget
        if budget.tokens(now) - seconds >= budget.reserve_s - 1e-6:
            return budget.take(seconds, now)
        if now <= self._bunch_until and self._stretch_s >= seconds - 1e-6:
            self._stretch_s -= seconds
            budget.borrow(seconds)
            return True
        return budget.take(seconds, now)

    def _held_s(self, payload: bytes) -> float:
        """Seconds of audio a packet decodes to: what it holds, not what its timestamps say."""
        samples = self._duration(payload) if self._duration is not None else None
        return (samples or self._step) / WEBRTC_RATE

    def _skip_gap(self, now: float) -> None:
        """The frame due could not be concealed within the budget: neither can the rest of the
        missing run, so it is skipped at once (a sender jumping its numbering pays nothing per
        frame), bar the run's last frame, which the packet after it may rebuild from FEC. Skipped
        frames repay a debt as refused ones do."""
        assert self._next is not None
        more = max(0, min(self._packets) - self._next - 2)
        if more and self.budget.in_debt:
            self.budget.take(more * self.frame_s, now, invented=True)
        self.stats.over_budget += 1 + more
        self._next += more
        if self._played_ts is not None:
            self._played_ts = (self._played_ts + more * self._step) % TS_MOD

    def _fill_timestamp_jump(self, packet: StoredPacket, out: list[Release], now: float) -> None:
        """Time the sender skipped (DTX) becomes concealment, less what a stall inserted.

        The fill pays for time that passed before the packet came (the stall began only
        ``2 frames + wait`` after it), so unlike other invented audio it may spend the budget's
        reserve — but not what the packet itself needs."""
        matched = 0
        if self._played_ts is not None:
            skipped = ((packet.timestamp - self._played_ts) % TS_MOD) // self._step - 1
            if 0 < skipped <= MAX_FILL_FRAMES:
                matched = skipped
                wanted = max(0, skipped - self._credit)
                affordable = int((self.budget.available(now) - self._held_s(packet.payload)) / self.frame_s + 1e-6)
                fill = max(0, min(wanted, affordable))
                for _ in range(fill):
                    self.budget.take(self.frame_s, now)
                    out.append(Release(Origin.CONCEAL, None, self._step, packet.arrival, inserted=True))
                for _ in range(wanted - fill):  # refused (repays a debt if there is one)
                    self.budget.take(self.frame_s, now, invented=True)
                self.stats.inserted += fill
                self.stats.over_budget += wanted - fill
        if self._overdue_since is not None:  # the first packet after a stall: its bunch may follow
            self._bunch_until = now + self.max_wait
            if self._credit > matched:  # a stall longer than the jump stretched the stream instead:
                self._stretch_s = (self._credit - matched) * self.frame_s  # its packets may borrow that
        self._credit = 0

    def _advance(self) -> None:
        assert self._next is not None
        self._next += 1
        self._overdue_since = None
