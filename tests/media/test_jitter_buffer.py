"""The receive jitter buffer, driven packet by packet with scripted arrival times (no clock)."""

from __future__ import annotations

import random

import pytest

from gateway.media.jitter_buffer import JitterBuffer, Origin, Release

FRAME_S = 0.02
STEP = 960

Arrival = tuple[float, int, int]  # (arrival time, 16-bit sequence number, 32-bit RTP timestamp)


def run(buffer: JitterBuffer, arrivals: list[Arrival], until: float,
        tail: bool = False) -> list[tuple[float, Release]]:
    """Feed arrivals in time order and call pop() at every arrival and every deadline, like the
    receive path does; returns what was released, with when (without the frames inserted after
    the last arrival, where the stream has ended, unless ``tail``)."""
    out: list[tuple[float, Release]] = []
    pending = sorted(arrivals)
    last = pending[-1][0]
    now = 0.0
    while True:
        deadline = buffer.deadline()
        candidates = [t for t in (deadline, pending[0][0] if pending else None) if t is not None]
        now = max(now, min(candidates)) if candidates else until + 1
        if now > until:
            return out if tail else [(when, r) for when, r in out if when <= last or not r.inserted]
        while pending and pending[0][0] <= now:
            _, seq, timestamp = pending.pop(0)
            buffer.push(seq, timestamp, packet_id(seq), now)
        out += [(now, r) for r in buffer.pop(now)]


def packet_id(seq: int) -> bytes:
    return seq.to_bytes(2, "big")


def stream(count: int, *, seq: int = 1000, timestamp: int = 123456, start: float = 0.0,
           delay: float = 0.0, jitter: float = 0.0, fifo: bool = True, loss: float = 0.0,
           seed: int = 1) -> list[Arrival]:
    """20 ms packets sent from ``start``, each arriving ``delay`` + U(0, jitter) later; ``fifo``
    keeps arrival order (jitter then bunches packets, as on most paths)."""
    rng = random.Random(seed)
    out: list[Arrival] = []
    last = 0.0
    for i in range(count):
        when = start + i * FRAME_S + delay + (rng.uniform(0, jitter) if jitter else 0.0)
        if fifo:
            when = last = max(when, last)
        if rng.random() >= loss:
            out.append((when, (seq + i) % 65536, (timestamp + i * STEP) % (1 << 32)))
    return out


def origins(out: list[tuple[float, Release]]) -> list[Origin]:
    return [r.origin for _, r in out]


def played(out: list[tuple[float, Release]]) -> list[int]:
    return [int.from_bytes(r.payload or b"", "big") for _, r in out if r.origin is Origin.PACKET]


def test_in_order_packets_leave_at_once() -> None:
    buffer = JitterBuffer()
    out = run(buffer, stream(100), until=100 * FRAME_S)
    assert played(out) == list(range(1000, 1100))
    assert all(when == release.received_at for when, release in out)
    assert buffer.stats.delay_percentile(95) == 0.0 and buffer.wait == buffer.min_wait
    assert buffer.packets_sent == 100 and buffer.packets_lost == 0


def test_a_lost_packet_is_rebuilt_from_the_next_ones_fec() -> None:
    buffer = JitterBuffer()
    arrivals = [a for a in stream(50) if a[1] != 1020]
    out = run(buffer, arrivals, until=1.0)
    assert len(out) == 50  # one frame per sequence number: a continuous cadence
    fec = [(when, r) for when, r in out if r.origin is Origin.FEC]
    assert len(fec) == 1 and fec[0][1].payload == packet_id(1021)  # rebuilt from the packet after it
    assert fec[0][0] - 21 * FRAME_S == pytest.approx(buffer.min_wait)  # waited only min_wait for 1020
    assert buffer.packets_lost == 1 and buffer.stats.concealed == 0


def test_a_burst_is_concealed_on_the_frame_clock_and_its_last_frame_rebuilt() -> None:
    buffer = JitterBuffer()
    arrivals = [a for a in stream(50) if not 1020 <= a[1] <= 1022]
    out = run(buffer, arrivals, until=1.0)
    assert len(out) == 50
    i = played(out).index(1019) + 1
    assert origins(out)[i:i + 4] == [Origin.CONCEAL, Origin.CONCEAL, Origin.FEC, Origin.PACKET]
    first, second = out[i][0], out[i + 1][0]
    assert first == pytest.approx(19 * FRAME_S + 2 * FRAME_S + buffer.min_wait)  # once two frames overdue
    assert second - first == pytest.approx(FRAME_S)
    assert buffer.stats.inserted == 2 and buffer.packets_lost == 3


def test_reordered_packets_are_put_back_in_order_and_the_wait_learns() -> None:
    buffer = JitterBuffer()
    arrivals = stream(30)
    arrivals[10] = (11 * FRAME_S + 0.007, 1010, arrivals[10][2])  # 1010 comes 7 ms after 1011
    out = run(buffer, arrivals, until=1.0)
    assert played(out) == list(range(1000, 1030))
    assert buffer.wait == pytest.approx(0.007 + buffer.margin)


def test_a_packet_later_than_the_wait_is_dropped_as_late() -> None:
    buffer = JitterBuffer()
    arrivals = stream(30)
    arrivals[10] = (11 * FRAME_S + 0.03, 1010, arrivals[10][2])  # after its frame was rebuilt
    out = run(buffer, arrivals, until=1.0)
    assert len(out) == 30 and 1010 not in played(out)
    assert buffer.stats.late == 1 and buffer.stats.fec == 1 and buffer.packets_lost == 0
    assert buffer.wait == pytest.approx(0.03 + buffer.margin)  # it would have needed 30 ms


def test_a_delay_spike_stretches_the_stream_instead_of_losing_audio() -> None:
    buffer = JitterBuffer()
    arrivals = stream(20) + stream(30, seq=1020, timestamp=123456 + 20 * STEP, start=20 * FRAME_S, delay=0.2)
    arrivals = [(max(t, 20 * FRAME_S + 0.2) if s >= 1020 else t, s, ts) for t, s, ts in arrivals]  # FIFO burst
    out = run(buffer, arrivals, until=2.0)
    assert played(out) == list(range(1000, 1050))  # every real frame reaches the listener
    inserted = [when for when, r in out if r.inserted]
    assert len(inserted) == 9  # on the frame clock from 2 frames + 10 ms overdue until the burst
    assert all(b - a == pytest.approx(FRAME_S) for a, b in zip(inserted, inserted[1:], strict=False))
    assert buffer.wait == buffer.max_wait  # it learnt how late packets can be


def test_the_wait_grows_under_jitter_and_shrinks_back_when_it_calms() -> None:
    buffer = JitterBuffer()
    jittery = stream(250, jitter=0.06, fifo=False)  # 5 s of 0-60 ms jitter, packets overtaking
    calm = stream(400, seq=1250, timestamp=123456 + 250 * STEP, start=5.0)
    out = run(buffer, jittery, until=5.0)
    assert buffer.wait > 0.03
    rebuilt_after_learning = [r for when, r in out if when > 2.0 and r.origin is not Origin.PACKET]
    assert len(rebuilt_after_learning) <= 2  # once learnt, reordered packets are waited for
    out = run(buffer, calm, until=13.0)
    assert buffer.wait == buffer.min_wait  # back to clean levels once the memory has passed
    assert all(when == r.received_at for when, r in out[-100:])  # no delay once calm


def test_bunched_fifo_jitter_loses_nothing_and_stays_short() -> None:
    buffer = JitterBuffer()
    arrivals = stream(1500, delay=0.05, jitter=0.04)  # ±20 ms around 70 ms, order kept
    out = run(buffer, arrivals, until=40.0)
    assert played(out) == list(range(1000, 2500))
    assert buffer.stats.delay_percentile(95) == 0.0  # nothing held back: packets leave as they come
    assert not any(r.inserted for _, r in out)  # a stall waits out the spread of transit times seen


def test_silence_suppression_keeps_the_timeline() -> None:
    """DTX: during silence the sender skips 400 ms of timestamps per packet, sequence unbroken."""
    buffer = JitterBuffer()
    talk = stream(20)
    dtx = [(20 * FRAME_S + k * 0.4, (1020 + k) % 65536, 123456 + (20 + 20 * k) * STEP) for k in range(5)]
    resume = stream(20, seq=1025, timestamp=123456 + 120 * STEP, start=20 * FRAME_S + 2.0)
    out = run(buffer, talk + dtx + resume, until=20 * FRAME_S + 2.0 + 20 * FRAME_S)
    assert played(out) == list(range(1000, 1045))
    assert len(out) == 140  # 2.8 s of the caller's timeline, 140 frames: none lost, none doubled
    assert buffer.packets_lost == 0 and buffer.stats.concealed == 0


def test_an_outage_is_concealed_once_not_twice() -> None:
    buffer = JitterBuffer()
    arrivals = stream(20) + stream(30, seq=1070, timestamp=123456 + 70 * STEP, start=70 * FRAME_S)
    out = run(buffer, arrivals, until=100 * FRAME_S)
    assert len(out) == 100 and played(out)[-30:] == list(range(1070, 1100))
    assert buffer.packets_lost == 50


def test_wraparound_of_sequence_and_timestamp() -> None:
    buffer = JitterBuffer()
    arrivals = [a for a in stream(60, seq=65510, timestamp=(1 << 32) - 20 * STEP) if a[1] != 3]
    arrivals.append((5 * FRAME_S + 0.001, 65515, arrivals[5][2]))  # a duplicate
    out = run(buffer, arrivals, until=2.0)
    assert len(out) == 60 and origins(out).count(Origin.FEC) == 1
    assert [s % 65536 for s in played(out)] == [(65510 + i) % 65536 for i in range(60) if i != 29]
    assert buffer.stats.duplicate == 1 and not any(r.inserted for _, r in out)
    assert buffer.packets_sent == 60 and buffer.packets_lost == 1


def test_a_duplicate_long_after_play_is_not_replayed() -> None:
    buffer = JitterBuffer()
    run(buffer, stream(40), until=40 * FRAME_S)
    buffer.push(1003, 123456 + 3 * STEP, packet_id(1003), 0.9)
    assert Origin.PACKET not in [r.origin for r in buffer.pop(0.9)]
    assert buffer.stats.duplicate == 1 and buffer.stats.late == 0


def test_a_new_ssrc_starts_a_new_sequence() -> None:
    buffer = JitterBuffer()
    run(buffer, stream(20), until=20 * FRAME_S)
    buffer.reset()
    out = run(buffer, stream(20, seq=40000, timestamp=9, start=0.5), until=0.9)
    assert played(out) == list(range(40000, 40020))
    assert buffer.packets_sent == 40 and buffer.packets_lost == 0


def test_a_restarted_sender_is_followed_but_a_stray_packet_is_not() -> None:
    buffer = JitterBuffer()
    arrivals = stream(20) + [(0.45, 30000, 5)]  # one stray packet from far away: ignored
    arrivals += stream(20, seq=20000, timestamp=77, start=0.5)  # a restart: followed
    out = run(buffer, arrivals, until=1.0)
    assert played(out) == list(range(1000, 1020)) + list(range(20000, 20020))
    assert 30000 not in played(out) and buffer.stats.resyncs == 1


def test_forty_ms_packets_are_rebuilt_and_concealed_forty_ms_at_a_time() -> None:
    buffer = JitterBuffer()
    arrivals = [(i * 0.04, 1000 + i, i * 1920) for i in range(30) if i not in (10, 20, 21)]
    out = run(buffer, arrivals, until=1.3)
    assert len(out) == 30 and {r.samples for _, r in out if r.origin is not Origin.PACKET} == {1920}
    assert origins(out).count(Origin.FEC) == 2 and buffer.frame_s == 0.04


@pytest.mark.parametrize("fifo", [True, False])
def test_ten_percent_loss_with_jitter_keeps_the_cadence_complete(fifo: bool) -> None:
    buffer = JitterBuffer()
    arrivals = stream(1500, delay=0.05, jitter=0.04, fifo=fifo, loss=0.1, seed=7)
    out = run(buffer, arrivals, until=40.0)
    assert len(out) == 1500  # every 20 ms of the caller's timeline, whatever was lost, and no more
    assert played(out) == sorted(played(out))
    assert buffer.stats.fec > 2 * buffer.stats.concealed  # most single losses had their FEC at hand
    assert buffer.stats.delay_percentile(50) <= 0.02 and buffer.stats.delay_percentile(95) <= 0.08
