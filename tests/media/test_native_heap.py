"""A call's set-up heap is frozen once its media runs, so a full collection mid-call walks only
what was made since (not every call's peer connection); what ended calls leave frozen is
handed back to the collector when no call is live, or every ``reclaim_after`` hang-ups."""

from __future__ import annotations

import asyncio
import gc
import weakref

from gateway.media.native.heap import CallHeap


class Node:
    """A reference cycle, like the ones aiortc's objects form (only the cycle collector frees them)."""

    def __init__(self) -> None:
        self.other = self


def call_objects(count: int) -> tuple[list[Node], weakref.ref[Node]]:
    nodes = [Node() for _ in range(count)]
    return nodes, weakref.ref(nodes[0])


def test_a_live_calls_heap_is_out_of_the_collectors_reach() -> None:
    heap = CallHeap(reclaim_after=100, idle_after=1)
    try:
        nodes, _ = call_objects(20_000)
        assert len(gc.get_objects()) >= 20_000  # what a full collection would walk now
        heap.call_started()
        assert len(gc.get_objects()) < 1_000  # only what was made since
        assert gc.get_freeze_count() >= 20_000
        del nodes
    finally:
        heap.call_ended()


def test_ended_calls_cycles_are_freed_when_no_call_is_live() -> None:
    heap = CallHeap(reclaim_after=100, idle_after=2)
    first, first_ref = call_objects(10)
    heap.call_started()
    second, second_ref = call_objects(10)
    heap.call_started()
    del first, second
    heap.call_ended()
    gc.collect()
    assert first_ref() is not None  # frozen: cyclic garbage waits for the reclaim (the price)
    heap.call_ended()  # none live, two ended: reclaimed now
    assert first_ref() is None and second_ref() is None
    assert heap.reclaims == 1 and heap.ended == 0


def test_under_constant_load_a_reclaim_comes_every_reclaim_after_hang_ups() -> None:
    heap = CallHeap(reclaim_after=3, idle_after=3)
    heap.call_started()  # one call stays live throughout
    refs = []
    for _ in range(3):
        nodes, ref = call_objects(10)
        heap.call_started()
        refs.append(ref)
        del nodes
        heap.call_ended()
    assert heap.live == 1 and heap.reclaims == 1
    assert all(ref() is None for ref in refs)
    heap.call_ended()


async def test_a_reclaim_waits_for_the_teardown_and_skips_if_a_call_started_meanwhile() -> None:
    heap = CallHeap(reclaim_after=100, idle_after=1, delay_s=0.05)
    nodes, ref = call_objects(10)
    heap.call_started()
    heap.call_ended()
    del nodes  # the call's teardown lets go of it after the hang-up
    assert heap.reclaims == 0
    await asyncio.sleep(0.1)
    assert heap.reclaims == 1 and ref() is None
    heap.call_started()
    heap.call_ended()
    heap.call_started()  # a new call before the reclaim was due: it would pause that call
    await asyncio.sleep(0.1)
    assert heap.reclaims == 1 and heap.ended == 1
    heap.call_ended()
    await asyncio.sleep(0.1)
    assert heap.reclaims == 2


async def test_closing_the_heap_cancels_a_reclaim_still_waiting() -> None:
    heap = CallHeap(reclaim_after=100, idle_after=1, delay_s=0.05)
    heap.call_started()
    heap.call_ended()  # a reclaim is due once the delay has passed
    heap.close()  # the app shuts down first
    await asyncio.sleep(0.1)
    assert heap.reclaims == 0 and heap.ended == 1
    heap.close()  # idempotent
    heap.reclaim()  # (hand what the test froze back to the collector)


def test_a_heap_that_does_not_freeze_only_counts() -> None:
    """A call no worker's heap sees (the embedding API's attach) is not frozen: nothing would hand
    its garbage back to the collector."""
    heap = CallHeap(reclaim_after=1, idle_after=1, freeze=False)
    frozen = gc.get_freeze_count()
    nodes, ref = call_objects(10)
    heap.call_started()
    assert gc.get_freeze_count() == frozen and heap.live == 1 and heap.freezes == 0
    del nodes
    heap.call_ended()
    assert heap.reclaims == 0 and heap.ended == 1
    gc.collect()
    assert ref() is None  # its cycles were the collector's all along
