"""Hostile RTP numbering, driven packet by packet through the jitter buffer with scripted times:
whatever the headers claim, what leaves never outruns the wall clock (sans-I/O, no sockets)."""

from __future__ import annotations

import pytest

from gateway.config import ConfigError, load_config
from gateway.media.audio_budget import AudioBudget
from gateway.media.jitter_buffer import JitterBuffer, Origin, Release
from gateway.media.opus import OpusEncoder, packet_samples
from gateway.media.rtp import RtpGate
from tests.media.test_jitter_buffer import FRAME_S, STEP, Arrival, played, run, stream

BURST = 0.2


def seconds(out: list[tuple[float, Release]], samples: int = STEP) -> float:
    return len(out) * samples / 48000


def lead(out: list[tuple[float, Release]], start: float, samples: int = STEP) -> float:
    """How far the audio released ran ahead of the wall clock, at its worst."""
    released, worst = 0.0, float("-inf")
    for when, _ in out:
        released += samples / 48000
        worst = max(worst, released - (when - start))
    return worst


def test_sequence_and_timestamp_jumps_get_no_more_than_real_time() -> None:
    """Each packet skips 99 sequence numbers and 2 s of timestamps: before, 99 concealed frames each."""
    buffer = JitterBuffer()
    arrivals = [(i * FRAME_S, (1000 + 100 * i) % 65536, (100 * i * STEP) % (1 << 32)) for i in range(500)]
    out = run(buffer, arrivals, until=10.0)
    assert lead(out, 0.0) <= BURST + FRAME_S
    assert buffer.stats.over_budget >= 490 * 98  # the missing runs were skipped, not concealed
    per_pop: dict[float, int] = {}
    for when, _ in out:
        per_pop[when] = per_pop.get(when, 0) + 1
    assert max(per_pop.values()) <= BURST / FRAME_S + 2  # bounded per packet too


def test_timestamp_jumps_without_sequence_gaps_get_no_more_than_real_time() -> None:
    buffer = JitterBuffer()
    arrivals = [(i * FRAME_S, 1000 + i, (50 * i * STEP) % (1 << 32)) for i in range(500)]  # 1 s per packet
    out = run(buffer, arrivals, until=10.0)
    assert lead(out, 0.0) <= BURST + FRAME_S
    assert played(out) == list(range(1000, 1500))  # the real packets still play


def test_a_flood_of_well_numbered_packets_is_cut_to_real_time() -> None:
    buffer = JitterBuffer()
    arrivals = [(i * FRAME_S + k * 0.001, 1000 + 10 * i + k, (10 * i + k) * STEP) for i in range(300) for k in range(10)]
    out = run(buffer, arrivals, until=6.0)
    assert lead(out, 0.0) <= BURST + FRAME_S
    assert 0.95 * 6.0 <= seconds(out) <= 6.0 + BURST
    assert len(buffer._packets) == 0  # nothing piles up


def test_packets_holding_more_than_their_timestamps_say_are_paid_for_by_what_they_hold() -> None:
    buffer = JitterBuffer(duration=lambda payload: 5760)  # 120 ms in each "20 ms" packet
    out = run(buffer, stream(300), until=6.0)
    decoded = [r for _, r in out if r.origin is Origin.PACKET]
    assert len(decoded) * 0.12 <= 6.0 + BURST + 0.12
    assert len(decoded) >= 6.0 / 0.12 - 3  # one in six: real time, not silence


def test_a_silent_browser_is_bridged_for_max_stall_then_costs_nothing_until_it_speaks() -> None:
    buffer = JitterBuffer(max_stall_s=2.0)
    talk = stream(50)
    back = stream(50, seq=1050, timestamp=(50 + 300) * STEP, start=7.0)  # 6 s later, the RTP clock ran on
    out = run(buffer, talk, until=6.9, tail=True)
    inserted = [when for when, r in out if r.inserted]
    assert inserted and inserted[-1] <= 49 * FRAME_S + 2.0 and len(inserted) <= 2.0 / FRAME_S
    assert buffer.deadline() is None  # not even a timer while it is silent
    out = run(buffer, back, until=8.0)
    assert out[0][0] == 7.0 and out[0][1].origin is Origin.PACKET  # its first packet leaves at once
    assert played(out) == list(range(1050, 1100))


def test_a_bunched_delay_spike_still_plays_every_packet_then_the_stream_comes_back_in_step() -> None:
    buffer = JitterBuffer()
    arrivals = [(max(t, 1.5) if 1.0 <= t < 1.5 else t, s, ts) for t, s, ts in stream(150)]  # held 0.5 s
    out = run(buffer, arrivals, until=3.0)
    assert played(out) == list(range(1000, 1150))  # the spike cost no speech: its packets borrowed…
    assert lead(out, 0.0) <= BURST + 0.5 + FRAME_S
    assert 0.3 < buffer.budget.debt_s <= 0.5
    second = [(max(t, 4.5) if 4.0 <= t < 4.5 else t, s, ts) for t, s, ts in stream(50, seq=1150, timestamp=150 * STEP,
                                                                                       start=3.5)]
    out = run(buffer, second, until=5.0)
    assert played(out) == list(range(1150, 1200)) and not any(r.inserted for _, r in out)  # …so the next
    # stall is not bridged (nothing more to borrow against) and its packets fill it
    dtx = [(5.0 + k * 0.4, 1200 + k, (200 + 20 * k) * STEP) for k in range(5)]  # a pause (DTX)
    out = run(buffer, dtx, until=7.0)
    assert buffer.budget.debt_s == 0  # the fill skipped in the pause repaid what was borrowed


def test_an_event_loop_hiccup_loses_no_speech() -> None:
    """The loop is busy for 400 ms: the stall timer fires late, then the queued packets come."""
    buffer = JitterBuffer()
    out: list[Release] = []
    for i in range(100):
        arrival = 1.4 if 1.0 <= i * FRAME_S < 1.4 else i * FRAME_S
        deadline = buffer.deadline()
        if deadline is not None and deadline < arrival:
            out += buffer.pop(arrival)  # the late timer runs first
        buffer.push(1000 + i, i * STEP, b"", arrival)
        out += buffer.pop(arrival)
    assert [r.origin for r in out].count(Origin.PACKET) == 100
    assert sum(r.inserted for r in out) <= 2  # no burst of stale concealment in front of them


def test_silence_then_a_flood_gets_at_most_the_bridged_stall_and_the_burst() -> None:
    buffer = JitterBuffer(max_stall_s=2.0)
    arrivals: list[Arrival] = list(stream(50))
    arrivals += [(5.0 + k * 0.0001, 1050 + k, (50 + 250 + k) * STEP) for k in range(400)]  # 8 s of audio at once
    arrivals += list(stream(100, seq=1450, timestamp=(300 + 400) * STEP, start=5.1))
    out = run(buffer, arrivals, until=7.2)
    assert seconds(out) <= 7.2 + BURST + 2.0 + buffer.budget.carry_s


@pytest.mark.parametrize("burst", [0.04, 0.2, 1.0])
def test_the_budget_refills_with_the_clock_only(burst: float) -> None:
    budget = AudioBudget(burst)
    spent = sum(budget.take(FRAME_S, 0.0) for _ in range(1000)) * FRAME_S
    assert spent == pytest.approx(burst)
    spent = sum(budget.take(FRAME_S, t * 0.001) for t in range(1, 1001)) * FRAME_S  # one second later
    assert spent == pytest.approx(1.0, abs=FRAME_S)


def test_invented_audio_yields_to_real_audio() -> None:
    budget = AudioBudget(0.2)
    assert budget.take(0.1, 0.0, invented=True)  # down to the reserve…
    assert not budget.take(FRAME_S, 0.0, invented=True)  # …and no further
    assert sum(budget.take(FRAME_S, 0.0) for _ in range(10)) == 5  # the rest is for real audio


def test_the_gate_follows_a_handful_of_new_ssrcs_then_ignores_the_rest() -> None:
    gate = RtpGate(max_ssrc_changes=3)
    assert gate.follow(1) and gate.follow(1)
    for ssrc in (2, 3, 4):
        assert not gate.follow(ssrc)  # one packet is not a stream yet…
        assert gate.follow(ssrc)  # …two in a row are: the old one is retired
    assert gate.changes == 3 and gate.exhausted
    assert not gate.permits(5, 0.0) and not gate.follow(5)  # past the limit: not even decrypted
    assert not gate.permits(1, 0.0) and not gate.follow(1)  # a retired stream's stragglers
    assert gate.permits(4, 0.0) and gate.follow(4)  # the stream goes on
    assert len(gate.known) == 4


def test_a_stray_packet_under_another_ssrc_does_not_take_the_stream_over() -> None:
    gate = RtpGate(max_ssrc_changes=4)
    assert gate.follow(1)
    for stray in (10, 11, 12, 13):
        assert not gate.follow(stray)
        assert gate.follow(1)
    assert gate.current == 1 and gate.exhausted and not gate.permits(14, 0.0)


def test_the_gate_drops_packets_beyond_the_rate_a_sender_could_mean() -> None:
    gate = RtpGate(max_ssrc_changes=4, max_rate=200, burst=100)
    admitted = sum(gate.permits(1, t * 0.0002) for t in range(10000))  # 5000 packets a second for 2 s
    assert 100 + 400 - 5 <= admitted <= 100 + 400 + 5
    assert sum(gate.permits(1, 2.0 + t * 0.02) for t in range(1, 100)) == 99  # 50 a second: all


@pytest.mark.parametrize("frame_samples", [120, 240, 480, 960, 1920, 2880])
def test_packet_duration_is_read_from_the_toc(frame_samples: int) -> None:
    import numpy as np
    encoder = OpusEncoder()
    if frame_samples < 480:
        encoder.set_bitrate(64000)
    payload = encoder.encode(np.full(frame_samples, 100, np.int16))
    assert packet_samples(payload) == frame_samples
    frames = payload[1] & 0x3F if payload[0] & 0x3 == 3 else (1 if payload[0] & 0x3 == 0 else 2)
    per_frame = frame_samples // frames
    six = bytes([payload[0] | 0x3, 0x06]) + payload[1:]  # code 3: six frames of that size
    assert packet_samples(six) == (per_frame * 6 if per_frame * 6 <= 5760 else None)
    assert packet_samples(b"") is None and packet_samples(bytes([0x03])) is None


@pytest.mark.parametrize(("env", "value"), [("MIC_BURST_MS", "10"), ("MIC_SILENCE_STOP", "0.1"),
                                            ("MIC_MAX_SSRC_CHANGES", "-1")])
def test_mic_limits_are_validated_at_start(env: str, value: str) -> None:
    with pytest.raises(ConfigError, match=env):
        load_config([], {env: value})
    assert load_config([], {}).mic_burst_ms == 200


async def test_a_delay_spike_on_a_real_connection_costs_no_speech_and_a_later_outage_repays_it() -> None:
    """aiortc peers over loopback: the network holds the mic's packets for 0.5 s mid-speech and
    then delivers them at once; later it loses 0.4 s of them."""
    import time

    from tests.audio_tools import voiced
    from tests.media.test_audio_receiver import close, connect, listen

    link = await connect(0.0)
    try:
        handler = link.receiver_obj._handle_rtp_packet
        held: list[tuple[object, int]] = []
        started = time.monotonic()
        spike, outage = started + 1.0, started + 2.5

        async def network(packet: object, arrival_time_ms: int) -> None:
            now = time.monotonic()
            if spike <= now < spike + 0.5:
                held.append((packet, arrival_time_ms))
                return
            if outage <= now < outage + 0.4:
                return
            while held:
                await handler(*held.pop(0))
            await handler(packet, arrival_time_ms)

        link.receiver_obj._handle_rtp_packet = network
        budget = link.source.buffer.budget  # type: ignore[attr-defined]
        link.mic.say(voiced(2.0, 200, 48000))
        await listen(link, outage - time.monotonic())
        debt = budget.debt_s
        await listen(link, 1.5)
        elapsed = time.monotonic() - started
        stats = link.source.stats()  # type: ignore[attr-defined]
    finally:
        await close(link)
    assert stats.frames_inserted >= 15  # the spike was bridged, then its packets came after all…
    speech = [f for when, f in link.frames if f.origin == "decoded" and started + 0.3 <= when < started + 2.0]
    assert len(speech) >= 1.7 / FRAME_S - 3  # …and still all played (borrowed against the bridged time)
    assert 0.2 <= debt <= 0.5
    assert budget.debt_s < debt - 0.2  # the outage's frames, not concealed, repaid it
    assert len(link.frames) * FRAME_S <= elapsed + BURST + 0.5  # the whole never outran the clock by more
