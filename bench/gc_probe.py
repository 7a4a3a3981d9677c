"""Run the gateway with its event-loop stalls explained (``bench/load.py --probe``).

    GC_PROBE_LOG=/tmp/probe.jsonl python bench/gc_probe.py <gateway arguments>

One JSON line per finding, with ``t`` = ``time.monotonic()`` (the same clock as the load
client's, so a call's gap can be matched to what the server was doing):

- ``{"gc": generation, "ms": …}``: every collection of generation 2, and any other over 5 ms;
- ``{"lag_ms": …}``: the loop ran a 5 ms timer more than 30 ms late;
- ``{"stall_ms": …, "stack": […]}``: a watcher thread found the loop's heartbeat older than
  40 ms and took the main thread's Python stack (what was running, unless it was C code that
  holds the GIL — then the next finding is a ``gc`` or ``lag`` line).

``GC_PROBE_CALL_FREEZE=0`` leaves each call's set-up heap unfrozen
(``gateway/media/native/heap.py`` off): the before of an A/B.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gateway.cli as cli

LOG = open(os.environ.get("GC_PROBE_LOG", "/dev/stderr"), "a", buffering=1)
LAG_S, STALL_S = 0.03, 0.04
heartbeat = [0.0]  # set by the loop's probe; 0: not running yet
starts: dict[int, float] = {}
walked = [0]


def write(**fields: object) -> None:
    LOG.write(json.dumps({"t": round(time.monotonic(), 4)} | fields) + "\n")


def on_gc(phase: str, info: dict[str, int]) -> None:
    generation = info["generation"]
    if phase == "start":
        if generation == 2:  # what this full collection is about to walk (cheap next to the walk)
            walked[0] = sum(len(gc.get_objects(g)) for g in range(3))
        starts[generation] = time.perf_counter()
        return
    ms = (time.perf_counter() - starts.pop(generation, time.perf_counter())) * 1000
    if generation == 2 or ms > 5:
        write(gc=generation, ms=round(ms, 2), collected=info["collected"], frozen=gc.get_freeze_count(),
              walked=walked[0] if generation == 2 else None)


def watch(main: int) -> None:
    reported = 0.0
    while True:
        time.sleep(0.01)
        beat = heartbeat[0]
        if not beat:
            continue
        stale = time.monotonic() - beat
        if stale > STALL_S and beat != reported:
            reported = beat
            frame = sys._current_frames().get(main)
            stack = traceback.format_stack(frame)[-8:] if frame is not None else []
            write(stall_ms=round(stale * 1000, 1), stack=[line.strip() for line in stack])


async def lag() -> None:
    loop = asyncio.get_running_loop()
    while True:
        before = loop.time()
        await asyncio.sleep(0.005)
        now = loop.time()
        heartbeat[0] = time.monotonic()
        if now - before - 0.005 > LAG_S:
            write(lag_ms=round((now - before - 0.005) * 1000, 1))


serve = cli.serve


def census() -> None:
    """On SIGUSR1: what a full collection has to walk (objects tracked outside the frozen start-up
    heap, by type) and how long one takes now."""
    objects = gc.get_objects()
    counts: dict[str, int] = {}
    for item in objects:
        name = f"{type(item).__module__}.{type(item).__qualname__}"
        counts[name] = counts.get(name, 0) + 1
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:25]
    del objects
    started = time.perf_counter()
    gc.collect()
    write(census=sum(counts.values()), full_ms=round((time.perf_counter() - started) * 1000, 1), top=top)


async def probed_serve(config: object, argv: object) -> None:
    import signal

    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, census)
    probe = asyncio.get_running_loop().create_task(lag())
    try:
        await serve(config, argv)  # type: ignore[arg-type]
    finally:
        probe.cancel()


if os.environ.get("GC_PROBE_CALL_FREEZE") == "0":  # the before of an A/B: calls' heaps stay unfrozen
    from gateway.media.native.heap import CallHeap

    def count_only(self: CallHeap) -> None:
        self.live += 1

    CallHeap.call_started = count_only  # type: ignore[method-assign]

gc.callbacks.append(on_gc)
threading.Thread(target=watch, args=(threading.get_ident(),), daemon=True).start()
cli.serve = probed_serve  # type: ignore[assignment]
cli.main(sys.argv[1:])
