"""NACK scheduling (sans-I/O): what is asked for, once, and how long the jitter buffer waits for
a resend — driven by a scripted sender that answers NACKs one round trip later (no clock)."""

from __future__ import annotations

import heapq
import random

import pytest

from gateway.media.jitter_buffer import JitterBuffer, Origin
from gateway.media.nack import NackPolicy

FRAME_S = 0.02
STEP = 960


def test_each_missing_packet_is_asked_for_once_as_its_gap_opens() -> None:
    policy = NackPolicy()
    policy.missing(101, 103)
    assert policy.take_due(1.0) == [101, 102, 103]
    policy.missing(101, 104)  # the same gap seen again (a later packet): only the new one
    assert policy.take_due(1.02) == [104]
    assert policy.take_due(1.04) == []
    assert policy.requested == 4


def test_runs_longer_than_max_run_are_an_outage_and_copies_are_not_asked_for() -> None:
    policy = NackPolicy(max_run=8)
    policy.missing(10, 30)
    policy.missing(40, 42, have={41})
    policy.filled(42)  # a RED copy or the reordered packet came before the NACK went out
    assert policy.take_due(0.0) == [40]


def test_sequence_numbers_asked_for_wrap_to_16_bits() -> None:
    policy = NackPolicy()
    policy.missing(65534, 65537)
    assert policy.take_due(0.0) == [65534, 65535, 0, 1]


def test_no_wait_until_the_sender_has_answered_then_the_learnt_resend_delay() -> None:
    policy = NackPolicy(max_wait=0.12, margin=0.01)
    policy.missing(5, 5)
    policy.take_due(1.0)
    assert policy.hold_until(5, 1.0, 1.0) is None  # nothing says this sender resends
    assert policy.arrived(5, 1.07)  # the resend came 70 ms after the NACK
    policy.missing(9, 9)
    policy.take_due(2.0)
    assert policy.hold_until(9, 2.0, 2.0) == pytest.approx(2.0 + 0.07 + 0.01)
    assert not policy.arrived(31, 2.1)  # never asked for


def test_the_wait_is_capped_and_skipped_when_most_resends_come_too_late() -> None:
    policy = NackPolicy(max_wait=0.12, margin=0.01)
    for i, delay in enumerate([0.06, 0.06, 0.07, 0.2]):  # one slow resend in four: wait, capped
        policy.missing(i, i)
        policy.take_due(float(i))
        policy.arrived(i, i + delay)
    policy.missing(10, 10)
    policy.take_due(10.0)
    assert policy.hold_until(10, 10.0, 10.0) == pytest.approx(10.0 + 0.12)
    for i, delay in enumerate([0.2, 0.25, 0.3], start=20):  # now most come after 120 ms: no wait at all
        policy.missing(i, i)
        policy.take_due(float(i))
        policy.arrived(i, i + delay)
    policy.missing(30, 30)
    policy.take_due(30.0)
    assert policy.hold_until(30, 30.0, 30.0) is None


def test_a_sender_that_stops_answering_is_no_longer_waited_for() -> None:
    policy = NackPolicy(give_up_after=3, expire_s=0.5)
    policy.missing(1, 1)
    policy.take_due(0.0)
    policy.arrived(1, 0.05)
    for i in range(4):
        policy.missing(10 + i, 10 + i)
        policy.take_due(1.0 + i)  # the earlier request expires unanswered
    assert policy.hold_until(13, 4.0, 4.0) is None
    policy.arrived(13, 4.05)  # it answers again
    policy.missing(20, 20)
    policy.take_due(5.0)
    assert policy.hold_until(20, 5.0, 5.0) is not None


def call(buffer: JitterBuffer, *, count: int, lost: set[int], one_way: float, answers: bool,
         seed: int = 3, jitter: float = 0.005) -> tuple[list[Origin], int]:
    """``count`` packets paced at 20 ms, those in ``lost`` dropped on first sending; each NACK
    the buffer asks for reaches a sender that resends (``answers``) ``one_way`` later, and the
    resend takes ``one_way`` back (+ U(0, ``jitter``) each way: reordered beyond 20 ms); a resend
    of a packet that did arrive is dropped, as SRTP's replay check does. Driven like the receive
    path: pop and NACKs at every arrival and every deadline. Returns the frames' origins and the
    NACKs sent."""
    rng = random.Random(seed)
    events: list[tuple[float, int]] = [(i * FRAME_S + one_way + rng.uniform(0, jitter), i)
                                       for i in range(count) if i not in lost]
    heapq.heapify(events)
    out: list[Origin] = []
    nacks = 0
    arrived: set[int] = set()
    while events:
        deadline = buffer.deadline()
        if deadline is not None and deadline < events[0][0]:
            now = deadline
        else:
            now, i = heapq.heappop(events)
            if i in arrived:
                continue
            arrived.add(i)
            buffer.push(i, 1000 + i * STEP, i.to_bytes(2, "big"), now)
        for seq in buffer.nacks_due(now):
            nacks += 1
            if answers:
                heapq.heappush(events, (now + 2 * one_way + rng.uniform(0, 2 * jitter), seq))
        out += [r.origin for r in buffer.pop(now)]
    return out, nacks


def test_lost_packets_come_back_in_time_when_the_round_trip_fits_the_wait() -> None:
    lost = set(range(20, 480, 10)) | {300, 301}  # 10 % and a run of two
    buffer = JitterBuffer(nack=NackPolicy(max_wait=0.12))
    origins, nacks = call(buffer, count=500, lost=lost, one_way=0.03, answers=True)
    assert nacks == len(lost)  # each asked for once
    stats = buffer.stats
    # The first resend teaches the policy the round trip (it came late: concealed); then all arrive in time.
    assert stats.resent >= len(lost) - 2
    assert stats.concealed + stats.fec <= 2
    assert origins.count(Origin.PACKET) >= 500 - 2  # the resends play as the packets themselves
    assert buffer.stats.delay_percentile(95) <= 0.12
    assert buffer.wait < 0.03  # resends are not reordering: the usual wait stays short


def test_no_answer_costs_no_waiting() -> None:
    lost = set(range(20, 480, 10))
    asked = JitterBuffer(nack=NackPolicy(max_wait=0.12))
    call(asked, count=500, lost=lost, one_way=0.03, answers=False)
    plain = JitterBuffer()
    call(plain, count=500, lost=lost, one_way=0.03, answers=False)
    assert asked.stats.nacked == len(lost) and asked.stats.resent == 0
    assert asked.stats.delay_percentile(95) == plain.stats.delay_percentile(95)
    assert asked.stats.fec == plain.stats.fec == len(lost)


def test_a_round_trip_longer_than_the_wait_bounds_the_delay_behind_a_gap() -> None:
    lost = set(range(20, 480, 10))
    buffer = JitterBuffer(nack=NackPolicy(max_wait=0.06))
    call(buffer, count=500, lost=lost, one_way=0.08, answers=True)
    assert buffer.stats.resent == 0  # 160 ms round trips never make a 60 ms wait
    assert buffer.stats.late == len(lost)  # (they all came, after their frames were rebuilt)
    assert buffer.stats.delay_percentile(100) <= 0.06 + 0.021


def test_packets_only_overtaken_are_not_asked_for_once_reordering_is_seen() -> None:
    # 50 ms one way, jitter 0–40 ms (± 20): a packet comes up to 20 ms after the one behind it
    guarded = JitterBuffer(nack=NackPolicy(max_wait=0.08))
    call(guarded, count=1500, lost=set(), one_way=0.05, answers=True, jitter=0.04)
    eager = JitterBuffer(nack=NackPolicy(max_wait=0.08, max_guard=0.0))  # asks as the gap opens
    call(eager, count=1500, lost=set(), one_way=0.05, answers=True, jitter=0.04)
    assert eager.stats.nacked > 100  # nothing was lost: every one of these made a duplicate
    assert guarded.stats.nacked <= 10, guarded.stats.nacked  # (the first second, before the spread is known)
    assert guarded.stats.concealed == eager.stats.concealed == 0


def test_with_the_guard_lost_packets_still_come_back_in_time_on_a_short_round_trip() -> None:
    rng = random.Random(5)
    lost = {i for i in range(60, 1500) if rng.random() < 0.1}
    buffer = JitterBuffer(nack=NackPolicy(max_wait=0.08))
    call(buffer, count=1500, lost=lost, one_way=0.02, answers=True, jitter=0.01)  # 20–30 ms: no overtaking
    stats = buffer.stats
    assert stats.nacked <= len(lost) + 5  # only the lost ones are asked for
    assert stats.resent >= 0.9 * len(lost), (stats.resent, len(lost))
    assert stats.delay_percentile(95) <= 0.08
