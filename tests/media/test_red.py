"""RFC 2198 packing, and what the receive path makes of RED copies under loss."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.media import red
from gateway.media.audio_receiver import decode_release
from gateway.media.jitter_buffer import JitterBuffer, Origin, Release
from gateway.media.opus import OpusDecoder, OpusEncoder, has_inband_fec, packet_samples
from gateway.media.red import RedBlock, RedEncoder, RedError, RedPolicy, frames, pack, unpack
from gateway.media.resample import Upsampler
from tests.audio_tools import DATA, read_wav
from tests.media.jitter_sim import drive, push_red

OPUS = 111


def test_a_chromium_style_packet_round_trips() -> None:
    payload = pack(OPUS, b"now", [RedBlock(OPUS, 960, b"before")])
    assert payload[:5] == bytes([0x80 | OPUS, 0x0F, 0x00, 0x06, OPUS])  # F=1 PT, offset 960 (14 bits), length 6 (10)
    assert unpack(payload) == [RedBlock(OPUS, 960, b"before"), RedBlock(OPUS, 0, b"now")]


@given(st.lists(st.binary(max_size=1023), max_size=2), st.binary(max_size=400))
def test_any_blocks_round_trip(earlier: list[bytes], primary: bytes) -> None:
    blocks = [RedBlock(OPUS, 960 * (len(earlier) - i), data) for i, data in enumerate(earlier)]
    assert unpack(pack(OPUS, primary, blocks)) == [*blocks, RedBlock(OPUS, 0, primary)]


@given(st.binary(max_size=64))
def test_garbage_raises_red_error_or_parses(data: bytes) -> None:
    try:
        blocks = unpack(data)
    except RedError:
        return
    assert sum(len(b.payload) for b in blocks) <= len(data)


@pytest.mark.parametrize("payload", [b"", b"\x80\x00", bytes([0x80 | OPUS, 0x0F, 0x00, 200, OPUS]) + b"short"])
def test_truncated_payloads_are_refused(payload: bytes) -> None:
    with pytest.raises(RedError):
        unpack(payload)


def test_blocks_rfc_2198_cannot_describe_are_left_out() -> None:
    payload = pack(OPUS, b"p", [RedBlock(OPUS, 1 << 14, b"too old"), RedBlock(OPUS, 960, b"x" * 1024)])
    assert unpack(payload) == [RedBlock(OPUS, 0, b"p")]


def test_copies_get_the_sequence_numbers_they_were_sent_with() -> None:
    payload = pack(OPUS, b"c", [RedBlock(OPUS, 1920, b"a"), RedBlock(OPUS, 960, b"b"), RedBlock(OPUS, 480, b"odd"),
                                RedBlock(9, 960, b"other codec")])
    got = frames(payload, sequence=1, timestamp=1000, media_type=OPUS, step=960)
    assert got == [red.Frame(0xFFFF, (1000 - 1920) & 0xFFFFFFFF, b"a", True), red.Frame(0, 40, b"b", True),
                   red.Frame(1, 1000, b"c", False)]


def test_encoder_repeats_the_last_frames_up_to_its_distance() -> None:
    encoder = RedEncoder(OPUS, distance=2)
    encoder.wrap(b"one", 0)
    encoder.wrap(b"two", 960)
    assert unpack(encoder.wrap(b"three", 1920)) == [RedBlock(OPUS, 1920, b"one"), RedBlock(OPUS, 960, b"two"),
                                                     RedBlock(OPUS, 0, b"three")]
    encoder.distance = 0
    assert unpack(encoder.wrap(b"four", 2880)) == [RedBlock(OPUS, 0, b"four")]


def test_policy_follows_loss_within_the_bitrate_budget() -> None:
    policy = RedPolicy()
    assert policy.choice.distance == 1 and policy.choice.opus_bitrate == 32000  # before any report
    assert policy.update(round(0.15 * 256)).distance == 2  # 15 % loss: at once
    assert policy.choice.opus_bitrate * 3 <= policy.budget
    for _ in range(30):
        policy.update(0)
    assert policy.choice.distance == 0  # long clean: no redundancy


def test_a_lost_packet_comes_back_from_the_next_packets_copy_at_once() -> None:
    buffer = JitterBuffer()
    buffer.push(0, 0, b"p0", 0.0)
    assert [r.origin for r in buffer.pop(0.0)] == [Origin.PACKET]
    # packet 1 is lost; packet 2 carries it
    buffer.push(1, 960, b"p1", 0.04, redundant=True)
    buffer.push(2, 1920, b"p2", 0.04)
    released = buffer.pop(0.04)
    assert [(r.origin, r.payload) for r in released] == [(Origin.RED, b"p1"), (Origin.PACKET, b"p2")]
    assert buffer.stats.red == 1 and buffer.stats.fec == 0 and buffer.stats.concealed == 0
    assert buffer.packets_lost == 1


def test_a_reordered_packet_whose_copy_played_is_neither_lost_nor_a_duplicate() -> None:
    buffer = JitterBuffer()
    buffer.push(0, 0, b"p0", 0.0)
    buffer.pop(0.0)
    buffer.push(1, 960, b"p1", 0.02, redundant=True)
    buffer.push(2, 1920, b"p2", 0.02)
    buffer.pop(0.02)
    buffer.push(1, 960, b"p1", 0.03)  # the packet itself, overtaken
    assert buffer.packets_lost == 0 and buffer.stats.duplicate == 0 and buffer.stats.late == 0


def test_copies_of_played_packets_change_nothing() -> None:
    buffer = JitterBuffer()
    for seq in range(5):
        if seq:
            buffer.push(seq - 1, 960 * (seq - 1), b"copy", 0.02 * seq, redundant=True)
        buffer.push(seq, 960 * seq, b"p", 0.02 * seq)
        assert all(r.origin is Origin.PACKET for r in buffer.pop(0.02 * seq))
    assert buffer.stats.decoded == 5 and buffer.stats.red == 0 and buffer.stats.duplicate == 0


def red_stream(buffer: JitterBuffer, lost: set[int], count: int, *, jitter: float = 0.0,
               seed: int = 3, late: dict[int, float] | None = None) -> list[tuple[float, Origin, bool]]:
    """A Chromium-like RED sender at distance 1 (each packet also carries the one before), 50 ms
    one way ± ``jitter`` (``late``: packet → its own delay past 50 ms instead), driven like the
    receive path (pop at every arrival and deadline); returns (when, origin, inserted) of every
    frame released up to the last arrival."""
    rng = random.Random(seed)
    delays = {i: rng.uniform(-jitter, jitter) for i in range(count)} | (late or {})
    arrivals = sorted((i * 0.02 + 0.05 + delays[i], i) for i in range(count) if i not in lost)

    def push(seq: int, now: float) -> None:
        if seq:
            buffer.push(seq - 1, 960 * (seq - 1), b"c%d" % (seq - 1), now, redundant=True)
        buffer.push(seq, 960 * seq, b"p%d" % seq, now)

    return [(now, r.origin, r.inserted) for now, releases in drive(buffer, arrivals, push) for r in releases]


def test_two_lost_in_a_row_come_back_from_the_copy_and_its_fec_without_stretching_the_speech() -> None:
    buffer = JitterBuffer()
    out = red_stream(buffer, {10, 11, 30, 31, 50, 51}, 70)
    # 10 is rebuilt from the FEC inside 11's copy (which 12 carries), 11 from that copy whole;
    # the stall before 12 came is no reason to invent a frame: the timeline stays 70 frames
    assert [origin for _, origin, _ in out].count(Origin.FEC) == 3
    assert [origin for _, origin, _ in out].count(Origin.RED) == 3
    assert not any(inserted for *_, inserted in out) and len(out) == 70
    assert buffer.stats.concealed == 0


def test_three_lost_in_a_row_cost_one_frame_and_only_one() -> None:
    buffer = JitterBuffer()
    out = red_stream(buffer, {10, 11, 12}, 30)
    origins = [origin for _, origin, _ in out]
    assert len(out) == 30 and origins[10:13] == [Origin.CONCEAL, Origin.FEC, Origin.RED]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_twenty_percent_random_loss_conceals_about_what_red_and_fec_cannot_carry(seed: int) -> None:
    import random

    rng = random.Random(seed)
    lost = {i for i in range(1500) if rng.random() < 0.2}
    unrecoverable = sum(1 for i in lost if i + 1 in lost and i + 2 in lost)  # no copy, no FEC left
    buffer = JitterBuffer()
    out = red_stream(buffer, lost, 1500, jitter=0.02, seed=seed)
    invented = sum(1 for _, origin, _ in out if origin is Origin.CONCEAL)
    assert invented <= 1.5 * unrecoverable + 5, (invented, unrecoverable)  # was ~p² (4 %): 60 a call
    assert len(out) <= 1500 + 10  # the stream is hardly stretched by frames nobody lost (was +60)


def test_with_reordering_a_stall_waits_for_the_packet_that_ends_it() -> None:
    # ± 20 ms of jitter: the packet after two lost ones comes up to 40 ms later than the one before
    # them suggests; a stall bridged before it came would stretch the speech by a made-up frame
    lost = {i for start in range(20, 480, 20) for i in (start, start + 1)}
    buffer = JitterBuffer()
    out = red_stream(buffer, lost, 500, jitter=0.02, seed=5)
    assert len(out) == 500 and buffer.stats.inserted == buffer.stats.concealed == 0
    assert buffer.stats.delay_percentile(95) <= 0.02  # waiting out a stall holds back no packet


def test_after_a_burst_the_overtaken_packet_with_the_copies_is_waited_for() -> None:
    # packets come 0–40 ms late, alternately; then 10 and 11 are lost, and 12 (the copy of 11,
    # whose FEC holds 10) comes 20 ms after 13 — still no later than packets have come before
    late = {i: 0.04 * (i % 2) for i in range(10)} | {12: 0.04, 13: 0.0}
    buffer = JitterBuffer()
    out = red_stream(buffer, {10, 11}, 30, late=late | {i: 0.04 * (i % 2) for i in range(14, 30)})
    assert [origin for _, origin, _ in out][10:13] == [Origin.FEC, Origin.RED, Origin.PACKET]
    assert buffer.stats.concealed == buffer.stats.inserted == 0 and len(out) == 30
    assert buffer.stats.delay_percentile(100) <= 0.04 + buffer.margin  # held no longer than packets come late


# --- real Opus with in-band FEC inside RED (distance 1), as Chromium sends it --------------------------


@dataclass
class Call:
    """What the receive path made of a RED stream: its releases and the 24 kHz audio decoded from them."""

    buffer: JitterBuffer
    releases: list[Release]
    pcm: np.ndarray


@cache
def chromium_packets(fec: bool) -> tuple[bytes, ...]:
    """Three pt-BR sentences (~12 s) as Chromium sends them once asked for FEC: 20 ms Opus frames
    (LBRR on when ``fec``), each packet a RED payload with the frame before it as its redundant block."""
    names = ("pt_br_capital_brasil", "pt_br_dom_casmurro", "pt_br_historia")
    pcm = Upsampler().process(np.concatenate([read_wav(DATA / f"{name}.wav")[0] for name in names]))
    encoder = OpusEncoder(fec=fec, loss_percent=10, max_bandwidth="superwideband")
    wrapper = RedEncoder(OPUS, 1)
    return tuple(wrapper.wrap(encoder.encode(pcm[i:i + 960]), i) for i in range(0, len(pcm) - 959, 960))


def lbrr(packets: Sequence[bytes], seq: int) -> bool:
    """Whether packet ``seq``'s own Opus frame carries LBRR for the frame before it."""
    return has_inband_fec(red.unpack(packets[seq])[-1].payload)


def receive(packets: Sequence[bytes], lost: set[int], *, jitter: float = 0.0, seed: int = 0, fifo: bool = False,
            fec: Callable[[bytes], bool] | None = has_inband_fec) -> Call:
    """``packets`` across a 50 ± ``jitter`` s link that loses ``lost`` (``fifo``: jitter bunches
    packets but none overtakes another), through the jitter buffer as
    :class:`~gateway.media.audio_receiver.RtpMicSource` drives it (RED split, copies pushed
    first, pop at every arrival and deadline) and its decoder."""
    rng = random.Random(seed)
    times = [i * 0.02 + 0.05 + rng.uniform(-jitter, jitter) for i in range(len(packets))]
    if fifo:
        times = list(itertools.accumulate(times, max))
    arrivals = sorted((when, i) for i, when in enumerate(times) if i not in lost)
    buffer = JitterBuffer(duration=packet_samples, fec=fec)
    decoder = OpusDecoder(24000)
    fmtp: dict[str, object] = {f"{OPUS}/{OPUS}": None}
    steps = drive(buffer, arrivals, lambda seq, now: push_red(buffer, packets[seq], seq, now, fmtp))
    releases: list[Release] = [r for _, released in steps for r in released]
    return Call(buffer, releases, np.concatenate([decode_release(decoder, r) for r in releases]))


def invented(call: Call) -> int:
    return sum(r.origin is Origin.CONCEAL for r in call.releases)


def burst_ends(packets: Sequence[bytes], every: int = 12) -> list[int]:
    """Where a burst can end (its last lost packet) so that the copy of it carries LBRR: spaced
    ``every`` packets apart, after the first second (the buffer has seen the link)."""
    ends: list[int] = []
    for end in range(50, len(packets) - 2):
        if lbrr(packets, end) and (not ends or end - ends[-1] >= every):
            ends.append(end)
    return ends


@pytest.mark.parametrize("jitter", [0.0, 0.02])
def test_a_burst_of_two_is_rebuilt_entirely_from_the_copy_and_its_fec(jitter: float) -> None:
    packets = chromium_packets(fec=True)
    ends = burst_ends(packets)
    assert len(ends) >= 10
    lost = {i for end in ends for i in (end - 1, end)}
    call = receive(packets, lost, jitter=jitter, seed=7, fifo=True)
    stats = call.buffer.stats
    assert invented(call) == 0 and len(call.releases) == len(packets)  # nothing made up, nothing stretched
    assert stats.fec == len(ends)  # the frame before each copy, from the copy's own LBRR
    # and it is the original: the copies' frames close to the packets', the FEC frames nearer than concealment
    clean, concealing = receive(packets, set()), receive(packets, lost, fec=lambda _: False)
    assert error(call, clean, ends) < 0.3
    assert error(call, clean, [end - 1 for end in ends]) < 0.5 * error(concealing, clean, [end - 1 for end in ends])


@pytest.mark.parametrize("jitter", [0.0, 0.02])
def test_a_burst_of_three_leaves_one_frame_to_conceal_and_only_one(jitter: float) -> None:
    packets = chromium_packets(fec=True)
    ends = burst_ends(packets)
    call = receive(packets, {i for end in ends for i in (end - 2, end - 1, end)}, jitter=jitter, seed=8, fifo=True)
    concealed = [seq for seq, release in enumerate(call.releases) if release.origin is Origin.CONCEAL]
    assert concealed == [end - 2 for end in ends] and len(call.releases) == len(packets)
    assert call.buffer.stats.fec == len(ends) and call.buffer.stats.red == len(ends)


@pytest.mark.parametrize("length", [2, 3])
def test_reordering_behind_a_burst_costs_a_frame_now_and_then(length: int) -> None:
    # the packet after a burst overtaken by the next one: it is waited for as long as packets
    # have come late lately, so only one later than any seen before costs its frames
    packets = chromium_packets(fec=True)
    ends = burst_ends(packets)
    call = receive(packets, {end - k for end in ends for k in range(length)}, jitter=0.02, seed=8)
    floor = len(ends) * (length - 2)
    assert floor <= invented(call) <= floor + len(ends) // 10 and len(call.releases) == len(packets)


def test_without_lbrr_in_the_copies_nothing_is_claimed_and_nothing_changes() -> None:
    packets = chromium_packets(fec=False)
    assert not any(lbrr(packets, seq) for seq in range(len(packets)))
    ends = list(range(50, len(packets) - 2, 12))
    lost = {i for end in ends for i in (end - 1, end)}
    call = receive(packets, lost)
    assert call.buffer.stats.fec == 0 and invented(call) == len(ends)  # the copy rebuilds one, the other is concealed
    unaware = receive(packets, lost, fec=None)  # a buffer that takes every copy for FEC
    assert unaware.buffer.stats.fec == len(ends)
    assert np.array_equal(call.pcm, unaware.pcm)  # libopus conceals there anyway: the same audio


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_bursty_loss_conceals_exactly_what_neither_copy_nor_fec_carries(seed: int) -> None:
    """Gilbert–Elliott, 10 % in bursts of 3 on average, 50 ± 20 ms (bunching, no overtaking)."""
    packets = chromium_packets(fec=True)
    rng = random.Random(seed)
    lost, bad = set(), False
    for seq in range(len(packets) - 1):
        bad = rng.random() >= 1 / 3 if bad else rng.random() < 0.1 / 0.9 / 3
        if bad:
            lost.add(seq)
    # a run ending at n: n comes back from n + 1's copy, n − 1 from that copy's LBRR (if it has it)
    ends = [seq for seq in lost if seq + 1 not in lost]
    recoverable = sum(1 + (seq - 1 in lost and lbrr(packets, seq)) for seq in ends)
    call = receive(packets, lost, jitter=0.02, seed=seed, fifo=True)
    assert len(lost) > 20
    assert invented(call) == len(lost) - recoverable
    assert len(call.releases) == len(packets)  # the timeline stays exact: no frame inserted for nothing
    assert call.buffer.stats.delay_percentile(95) <= 0.02


def frame(call: Call, seq: int) -> np.ndarray:
    return call.pcm[seq * 480:(seq + 1) * 480].astype(np.float64)


def error(call: Call, clean: Call, seqs: Sequence[int]) -> float:
    """How far the frames ``seqs`` are from the lossless call's: error energy over signal energy."""
    got, want = (np.concatenate([frame(c, seq) for seq in seqs]) for c in (call, clean))
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))
