"""The receive jitter buffer, driven packet by packet with scripted arrival times."""

from __future__ import annotations

import random

from gateway.jitter_buffer import FRAME_S, JitterBuffer, Origin


def run(buffer: JitterBuffer, arrivals: list[tuple[float, int]], until: float) -> list[tuple[float, Origin, int]]:
    """Feed (arrival time, seq) in time order, polling at every arrival and deadline; returns the
    releases up to the last packet sent (after it, the stream's end is concealed briefly)."""
    out: list[tuple[float, Origin, int]] = []
    pending = sorted(arrivals)
    now = 0.0
    while now <= until:
        deadline = buffer.deadline()
        next_arrival = pending[0][0] if pending else None
        candidates = [t for t in (deadline, next_arrival) if t is not None and t >= now]
        if not candidates:
            break
        now = min(candidates)
        while pending and pending[0][0] <= now:
            _, seq = pending.pop(0)
            buffer.push(seq % 65536, bytes([seq % 256]), now)
        out += [(now, r.origin, r.seq) for r in buffer.pop(now)]
    last = max(seq for _, seq in arrivals)
    return [(when, origin, seq) for when, origin, seq in out if seq % 65536 <= last % 65536 or seq < last]


def steady(count: int, start_seq: int = 1000, jitter: float = 0.0, seed: int = 1) -> list[tuple[float, int]]:
    rng = random.Random(seed)
    return [(i * FRAME_S + (rng.uniform(0, jitter) if jitter else 0.0), start_seq + i) for i in range(count)]


def test_in_order_packets_leave_at_once() -> None:
    buffer = JitterBuffer()
    out = run(buffer, steady(100), until=3)
    assert [seq for _, _, seq in out] == list(range(1000, 1100))
    assert all(origin is Origin.PACKET for _, origin, _ in out)
    assert buffer.stats.delay_percentile(95) == 0.0


def test_a_lost_packet_is_rebuilt_from_the_next_ones_fec_without_waiting() -> None:
    buffer = JitterBuffer()
    arrivals = [a for a in steady(50) if a[1] != 1020]
    out = run(buffer, arrivals, until=2)
    assert [seq for _, _, seq in out] == list(range(1000, 1050))  # a continuous cadence
    released = {seq: (when, origin) for when, origin, seq in out}
    assert released[1020][1] is Origin.FEC
    assert released[1020][0] - 21 * FRAME_S <= buffer.min_wait + 1e-9  # waited at most min_wait
    assert [origin for _, origin, _ in out].count(Origin.CONCEAL) == 0


def test_a_burst_conceals_then_uses_fec_for_the_last() -> None:
    buffer = JitterBuffer()
    arrivals = [a for a in steady(50) if not 1020 <= a[1] <= 1022]
    out = run(buffer, arrivals, until=2)
    origins = {seq: origin for _, origin, seq in out}
    assert [origins[s] for s in (1020, 1021, 1022, 1023)] == [Origin.CONCEAL, Origin.CONCEAL, Origin.FEC,
                                                              Origin.PACKET]


def test_reordered_packets_are_put_back_in_order() -> None:
    buffer = JitterBuffer()
    arrivals = steady(30)
    arrivals[10], arrivals[11] = (arrivals[11][0], arrivals[10][1]), (arrivals[11][0] + 0.005, arrivals[11][1])
    arrivals = [(t, s) for t, s in arrivals]
    arrivals[10] = (10 * FRAME_S + 0.025, 1010)  # 1010 arrives 5 ms after 1011
    arrivals[11] = (11 * FRAME_S, 1011)
    out = run(buffer, arrivals, until=1)
    assert [seq for _, _, seq in out] == list(range(1000, 1030))
    assert all(origin is Origin.PACKET for _, origin, _ in out)


def test_the_wait_grows_under_jitter_and_shrinks_back() -> None:
    buffer = JitterBuffer()
    # Three seconds of 0–60 ms jitter (heavy reordering), then a calm network.
    jittery = [(i * FRAME_S + random.Random(i).uniform(0, 0.06), 1000 + i) for i in range(150)]
    calm = [(3.5 + i * FRAME_S, 1150 + i) for i in range(400)]
    out = run(buffer, jittery, until=3.2)
    assert buffer.wait > 0.03
    rebuilt_late = [seq for _, origin, seq in out if origin is not Origin.PACKET and seq >= 1050]
    assert len(rebuilt_late) <= 2  # once learned, reordered packets are waited for, not rebuilt
    run(buffer, calm, until=12)
    assert buffer.wait == buffer.min_wait  # back to clean levels once the memory passed


def test_wraparound_duplicates_and_late_packets() -> None:
    buffer = JitterBuffer()
    arrivals = steady(40, start_seq=65520)
    arrivals.append((5 * FRAME_S + 0.001, 65525))  # duplicate
    out = run(buffer, arrivals, until=2)
    assert [seq % 65536 for _, _, seq in out] == [(65520 + i) % 65536 for i in range(40)]
    assert buffer.stats.duplicate == 1
    buffer.push((65520 + 3) % 65536, b"x", 2.0)  # played long ago: a duplicate, not a late packet
    assert buffer.stats.duplicate == 2 and buffer.stats.late == 0


def test_a_stalled_stream_is_concealed_briefly_then_resumes() -> None:
    buffer = JitterBuffer(max_stall_frames=5)
    arrivals = steady(20) + [(1.0 + i * FRAME_S, 1020 + 25 + i) for i in range(10)]
    out = run(buffer, arrivals, until=2)
    conceal_times = [when for when, origin, seq in out if origin is Origin.CONCEAL and seq < 1025]
    assert len(conceal_times) == 5  # then it stops inventing audio
    assert all(b - a >= FRAME_S - 1e-9 for a, b in zip(conceal_times, conceal_times[1:]))  # on the frame clock
    assert [seq for _, origin, seq in out if origin is Origin.PACKET][-10:] == list(range(1045, 1055))


def test_loss_and_jitter_keep_the_cadence_complete() -> None:
    rng = random.Random(7)
    arrivals = [(i * FRAME_S + 0.05 + rng.uniform(-0.02, 0.02), 1000 + i) for i in range(1500) if rng.random() > 0.1]
    buffer = JitterBuffer()
    out = run(buffer, arrivals, until=40)
    seqs = [seq for _, _, seq in out]
    assert seqs == list(range(1000, 1000 + len(seqs)))
    assert len(seqs) >= 1495
    assert buffer.stats.fec > buffer.stats.concealed  # most single losses had their FEC at hand
    assert buffer.stats.delay_percentile(50) <= 0.04
