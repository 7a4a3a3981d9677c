"""The native pump (gateway/media/native/_pump.c) on its own: SRTP against pylibsrtp (which
aiortc uses), RTP parsing, the datagram demux, the batch drain, the sender's packets."""

from __future__ import annotations

import os
import random
import socket
import struct
import time
from typing import Any

import pylibsrtp
import pytest
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

from gateway.media.native import available, load

pytestmark = pytest.mark.skipif(available() is not None, reason=str(available()))

PROFILES = {  # libsrtp profile → key + salt length
    pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80: 30,
    pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM: 28,
    pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_256_GCM: 44,
}
STUN = bytes.fromhex("000100082112a442") + os.urandom(12) + bytes.fromhex("80220004") + b"test"
DTLS = bytes([22, 254, 253]) + os.urandom(40)


def rtp(seq: int, *, ssrc: int = 0x1234ABCD, ts: int = 960, pt: int = 111, payload: bytes = b"\x78opus",
        marker: bool = False) -> bytes:
    return RtpPacket(payload_type=pt, marker=int(marker), sequence_number=seq, timestamp=ts, ssrc=ssrc,
                     payload=payload).serialize()


def rtcp_rr(ssrc: int = 0x1234ABCD) -> bytes:
    return struct.pack("!BBHI", 0x80, 201, 1, ssrc)  # a receiver report with no blocks


def pylib(profile: int, key: bytes, outbound: bool) -> pylibsrtp.Session:
    kind = pylibsrtp.Policy.SSRC_ANY_OUTBOUND if outbound else pylibsrtp.Policy.SSRC_ANY_INBOUND
    policy = pylibsrtp.Policy(key=key, ssrc_type=kind, srtp_profile=profile)
    policy.allow_repeat_tx = True
    policy.window_size = 1024
    return pylibsrtp.Session(policy)


@pytest.mark.parametrize("profile", PROFILES)
def test_srtp_round_trips_with_pylibsrtp_both_ways(profile: int) -> None:
    pump, key = load(), os.urandom(PROFILES[profile])
    ours_out, ours_in = pump.Session(profile, key, True), pump.Session(profile, key, False)
    theirs_out, theirs_in = pylib(profile, key, True), pylib(profile, key, False)
    for seq in range(5):
        packet = rtp(seq, payload=os.urandom(80))
        protected = ours_out.protect(packet)
        assert protected != packet and len(protected) > len(packet)
        assert theirs_in.unprotect(protected) == packet
        assert ours_in.unprotect(theirs_out.protect(packet)) == packet


def test_srtp_refuses_tampering_replays_and_wrong_keys() -> None:
    pump, profile = load(), pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80
    key = os.urandom(30)
    sender, receiver = pump.Session(profile, key, True), pump.Session(profile, key, False)
    protected = sender.protect(rtp(1))
    tampered = bytearray(protected)
    tampered[14] ^= 1
    with pytest.raises(ValueError):
        receiver.unprotect(bytes(tampered))
    receiver.unprotect(protected)
    with pytest.raises(ValueError):  # the same packet again
        receiver.unprotect(protected)
    with pytest.raises(ValueError):
        pump.Session(profile, os.urandom(30), False).unprotect(sender.protect(rtp(2)))
    with pytest.raises(ValueError):
        pump.Session(profile, b"short", False)
    with pytest.raises(ValueError):
        pump.Session(99, key, False)
    with pytest.raises(ValueError):
        receiver.unprotect(b"\x80" * 5)


def test_rtp_parse_follows_rfc_3550() -> None:
    parse = load().parse_rtp
    assert parse(rtp(7, ts=123456, marker=True, payload=b"abc")) == (0x1234ABCD, 111, 7, 123456, 1, b"abc")
    with_csrc = RtpPacket(payload_type=0, sequence_number=1, timestamp=2, ssrc=3, payload=b"x")
    with_csrc.csrc = [10, 11]
    assert parse(with_csrc.serialize())[5] == b"x"
    extension_map = HeaderExtensionsMap()
    extension_map.configure(RTCRtpParameters(headerExtensions=[
        RTCRtpHeaderExtensionParameters(id=9, uri="urn:ietf:params:rtp-hdrext:sdes:mid")]))
    with_mid = RtpPacket(payload_type=111, sequence_number=1, timestamp=2, ssrc=3, payload=b"pay")
    with_mid.extensions.mid = "0"
    assert parse(with_mid.serialize(extension_map))[5] == b"pay"
    padded = bytearray(rtp(1, payload=b"data\x00\x00\x03"))
    padded[0] |= 0x20
    assert parse(bytes(padded))[5] == b"data"
    assert parse(b"") is None
    assert parse(b"\x80\x6f\x00") is None  # short
    assert parse(b"\x40" + rtp(1)[1:]) is None  # version 1
    assert parse(bytes([0x8F]) + rtp(1)[1:]) is None  # 15 CSRCs that are not there
    bad_extension = bytearray(rtp(1))
    bad_extension[0] |= 0x10
    assert parse(bytes(bad_extension) + b"\xbe\xde\x00\xff") is None  # extension longer than the packet
    bad_padding = bytearray(rtp(1, payload=b"\x00\x00\xff"))
    bad_padding[0] |= 0x20
    assert parse(bytes(bad_padding)) is None


class Sink:
    def __init__(self) -> None:
        self.handed_back: list[tuple[bytes, tuple[str, int]]] = []
        self.ready = 0

    def fallback(self, data: bytes, addr: tuple[str, int]) -> None:
        self.handed_back.append((data, addr))

    def on_ready(self) -> None:
        self.ready += 1


def pair() -> tuple[object, object, Sink]:
    pump, profile, key = load(), pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80, os.urandom(30)
    sink = Sink()
    receiver = pump.Receiver(pump.Session(profile, key, False), sink.fallback, sink.on_ready)
    return pylib(profile, key, True), receiver, sink


def test_a_batch_mixing_stun_dtls_rtcp_and_rtp_is_demultiplexed() -> None:
    theirs, receiver, sink = pair()
    addr = ("127.0.0.1", 5000)
    srtcp = theirs.protect_rtcp(rtcp_rr())
    batch = [STUN, theirs.protect(rtp(1)), DTLS, srtcp, theirs.protect(rtp(2)), b"", b"\x80", theirs.protect(rtp(3))]
    for datagram in batch:
        receiver(datagram, addr)
    assert [d for d, _ in sink.handed_back] == [STUN, DTLS, srtcp, b"", b"\x80"]  # unchanged, in order
    assert all(a == addr for _, a in sink.handed_back)
    assert sink.ready == 1, "the owner is told once per batch"
    assert receiver.queued == 3
    packets = receiver.drain(None, 0.0)
    assert [(p[2], p[5]) for p in packets] == [(1, b"\x78opus"), (2, b"\x78opus"), (3, b"\x78opus")]
    assert receiver.queued == 0
    receiver(theirs.protect(rtp(4)), addr)
    assert sink.ready == 2, "a new batch after a drain"


def test_the_gate_is_asked_before_decryption_and_refusals_cost_no_unprotect() -> None:
    theirs, receiver, sink = pair()
    asked: list[tuple[int, float]] = []

    def permits(ssrc: int, now: float) -> bool:
        asked.append((ssrc, now))
        return ssrc != 0xBAD

    good, bad = theirs.protect(rtp(1)), theirs.protect(rtp(1, ssrc=0xBAD))
    tampered = bytearray(theirs.protect(rtp(2)))
    tampered[-1] ^= 0xFF
    for datagram in (good, bad, bytes(tampered)):
        receiver(datagram, ("127.0.0.1", 1))
    packets = receiver.drain(permits, 12.5)
    assert [p[0] for p in packets] == [0x1234ABCD]
    assert asked == [(0x1234ABCD, 12.5), (0xBAD, 12.5), (0x1234ABCD, 12.5)]
    assert receiver.counts | {} == {"received": 3, "refused": 1, "undecryptable": 1, "malformed": 0, "overflow": 0,
                                   "handed_back": 0}


def test_statistics_match_aiortcs_stream_statistics() -> None:
    from aiortc.rtcrtpreceiver import StreamStatistics

    theirs, receiver, _ = pair()
    reference = StreamStatistics(48000)
    rng = random.Random(5)
    order = [s for s in range(65530, 65536)] + [0, 2, 1, 3, 5, 4] + list(range(6, 40))
    for seq in order:
        packet = rtp(seq % 65536, ts=(seq * 960) % (1 << 32), payload=bytes(rng.randbytes(20)))
        receiver(theirs.protect(packet), ("127.0.0.1", 1))
        reference.add(RtpPacket.parse(packet))
    receiver.drain(None, 0.0)
    ours = receiver.statistics(0x1234ABCD)
    assert ours is not None and receiver.statistics(1) is None
    for name in ("base_seq", "max_seq", "cycles", "packets_received", "_last_timestamp"):
        assert ours[name] == getattr(reference, name), name
    copy = StreamStatistics(48000)
    for name, value in ours.items():
        setattr(copy, name, value)
    assert copy.packets_lost == reference.packets_lost
    assert copy.packets_expected == reference.packets_expected
    # One arrival time per batch here, one per add() there (microseconds apart, unless the
    # test is preempted): the same estimate within a few percent.
    assert abs(copy.jitter - reference.jitter) <= 0.05 * reference.jitter + 2


def test_hostile_datagrams_do_not_crash_or_leak() -> None:
    theirs, receiver, sink = pair()
    rng = random.Random(11)
    junk = [rng.randbytes(rng.randrange(0, 1600)) for _ in range(300)]
    junk += [bytes([0x80 | rng.randrange(0, 64)]) + rng.randbytes(rng.randrange(1, 40)) for _ in range(300)]
    junk += [b"\x80" * 2000, bytes(12), b"\xbf" + bytes(11)]
    for datagram in junk:
        receiver(datagram, ("10.0.0.1", 9))
        if receiver.queued > 100:
            receiver.drain(None, 0.0)
    assert receiver.drain(None, 0.0) == []  # nothing forged gets through authentication
    counts = receiver.counts
    assert counts["received"] + counts["handed_back"] + counts["overflow"] == len(junk)
    assert counts["undecryptable"] + counts["malformed"] == counts["received"]


def test_a_full_queue_drops_instead_of_growing() -> None:
    theirs, receiver, _ = pair()
    for seq in range(300):
        receiver(theirs.protect(rtp(seq)), ("127.0.0.1", 1))
    assert receiver.queued == 256
    assert receiver.counts["overflow"] == 44
    assert len(receiver.drain(None, 0.0)) == 256


def test_a_closed_receiver_hands_everything_back() -> None:
    theirs, receiver, sink = pair()
    receiver(theirs.protect(rtp(1)), ("127.0.0.1", 1))
    receiver.close()
    late = theirs.protect(rtp(2))
    receiver(late, ("127.0.0.1", 1))
    assert receiver.queued == 0 and sink.handed_back == [(late, ("127.0.0.1", 1))]


def test_the_sender_puts_aiortcs_packets_on_the_wire() -> None:
    pump, profile, key = load(), pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80, os.urandom(30)
    listener, out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(2)
    try:
        sender = pump.Sender(pump.Session(profile, key, True), out.fileno(), "127.0.0.1", listener.getsockname()[1],
                             0xCAFE, 111, 65535, 0xFFFFFF00, 4, "0", 2)
        for pts in (0, 960, 1920):
            assert sender.send(b"opus" * 10, pts, True) > 52
        extension_map = HeaderExtensionsMap()
        extension_map.configure(RTCRtpParameters(headerExtensions=[
            RTCRtpHeaderExtensionParameters(id=4, uri="urn:ietf:params:rtp-hdrext:sdes:mid"),
            RTCRtpHeaderExtensionParameters(id=2, uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time")]))
        theirs = pylib(profile, key, False)
        packets = [RtpPacket.parse(theirs.unprotect(listener.recv(2000)), extension_map) for _ in range(3)]
    finally:
        listener.close()
        out.close()
    assert [p.sequence_number for p in packets] == [65535, 0, 1]
    assert [p.timestamp for p in packets] == [0xFFFFFF00, (0xFFFFFF00 + 960) % (1 << 32), 0xFFFFFF00 + 1920 - (1 << 32)]
    assert all(p.ssrc == 0xCAFE and p.payload_type == 111 and p.marker == 1 for p in packets)
    assert all(p.payload == b"opus" * 10 and p.extensions.mid == "0" for p in packets)
    assert all(p.extensions.abs_send_time is not None for p in packets)
    assert (sender.packets, sender.octets, sender.last_timestamp) == (3, 120, packets[-1].timestamp)


def test_a_send_on_a_closed_socket_is_a_drop_not_an_error() -> None:
    pump, profile = load(), pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    fd = out.fileno()
    sender = pump.Sender(pump.Session(profile, os.urandom(30), True), fd, "127.0.0.1", 9, 1, 111, 0, 0)
    out.close()
    assert sender.send(b"x", 0, True) == 0
    assert sender.dropped == 1 and sender.packets == 0
    with pytest.raises(ValueError):
        pump.Sender(pump.Session(profile, os.urandom(30), True), fd, "not-an-address", 9, 1, 111, 0, 0)
    with pytest.raises(ValueError):  # a sender needs an outbound session
        pump.Sender(pump.Session(profile, os.urandom(30), False), fd, "127.0.0.1", 9, 1, 111, 0, 0)


def sender_and_listener(profile: int, key: bytes, sequence: int = 100) -> tuple[Any, socket.socket, socket.socket]:
    listener, out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(0.5)
    sender = load().Sender(load().Session(profile, key, True), out.fileno(), "127.0.0.1", listener.getsockname()[1],
                           0xCAFE, 111, sequence, 0, 4, "0", 2)
    return sender, listener, out


def received(listener: socket.socket) -> list[bytes]:
    datagrams = []
    listener.settimeout(0.2)
    try:
        while True:
            datagrams.append(listener.recv(2000))
    except TimeoutError:
        return datagrams


def test_a_nacked_packet_goes_out_again_as_the_same_datagram() -> None:
    profile, key = pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80, os.urandom(30)
    sender, listener, out = sender_and_listener(profile, key, sequence=65534)
    try:
        for i in range(20):  # 65534, 65535, 0, 1, … 17
            sender.send(bytes([i]) * 60, 960 * i, True)
        first = received(listener)
        assert len(first) == 20
        # 65535 and 0 lost, one never sent, and 65536: aiortc's NACK parse does not wrap (it means 0)
        assert sender.resend([65535, 0, 40, 65536]) == 3
        again = received(listener)
    finally:
        listener.close()
        out.close()
    assert again == [first[1], first[2], first[2]]  # byte for byte: no second protect of an index
    theirs = pylib(profile, key, False)
    assert [RtpPacket.parse(theirs.unprotect(d)).sequence_number for d in first[:3]] == [65534, 65535, 0]
    with pytest.raises(pylibsrtp.Error):  # a receiver that had it drops the copy as a replay…
        theirs.unprotect(again[0])
    fresh = pylib(profile, key, False)  # …one that lost it plays it
    assert RtpPacket.parse(fresh.unprotect(again[0])).payload == bytes([1]) * 60
    assert (sender.resent, sender.resend_unknown, sender.resend_repeated) == (3, 1, 0)
    assert sender.resent_bytes == len(first[1]) + 2 * len(first[2])
    assert (sender.packets, sender.octets) == (20, 1200)  # what the sender reports count: the stream itself


def test_resends_are_bounded_per_packet_by_budget_and_by_age() -> None:
    pump, profile = load(), pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80
    sender, listener, out = sender_and_listener(profile, os.urandom(30))
    try:
        for i in range(40):
            sender.send(os.urandom(120), 960 * i, True)
        sent_bytes = sum(len(d) for d in received(listener))
        assert sender.resend([100] * 5) == pump.RESENDS_PER_PACKET  # asked for five times, sent twice more
        assert sender.resend_repeated == 5 - pump.RESENDS_PER_PACKET
        assert sender.resend([101], 0.5) == 1 and sender.resend([101], 0.5) == 0  # not twice within a round trip
        for _ in range(10):  # a hostile peer NACKs everything, over and over
            sender.resend(range(100, 140))
        resent = received(listener)
        assert len(resent) == sender.resent
        assert sender.resent_bytes == sum(len(d) for d in resent)
        assert sender.resent_bytes <= sent_bytes / pump.RESEND_SHARE  # never more than the budget…
        assert sender.resent_bytes >= sent_bytes / pump.RESEND_SHARE - 200  # …which it may use up
        assert sender.resend_over_budget > 0 and sender.resend_repeated > 0
        assert max(resent.count(d) for d in resent) <= pump.RESENDS_PER_PACKET
        # 64 more: the ring and its slots moved on, the first packets are forgotten
        for i in range(pump.HISTORY_SLOTS):
            sender.send(os.urandom(120), 960 * (40 + i), True)
        received(listener)
        unknown = sender.resend_unknown
        assert sender.resend(range(100, 140)) == 0 and sender.resend_unknown == unknown + 40
        sender.send(os.urandom(120), 0, True)
        time.sleep(pump.HISTORY_AGE_MS / 1000 + 0.05)
        assert sender.resend([sender.sequence - 1]) == 0  # too old to be played when it arrives
    finally:
        listener.close()
        out.close()


def test_the_history_holds_what_fits_in_its_ring() -> None:
    pump, profile = load(), pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80
    sender, listener, out = sender_and_listener(profile, os.urandom(30), sequence=0)
    try:
        for i in range(pump.HISTORY_SLOTS):  # 64 packets of ~1.2 kB: more than the ring's bytes
            sender.send(os.urandom(1200), 960 * i, True)
        sent = received(listener)
        kept = []
        for seq in range(pump.HISTORY_SLOTS):
            unknown = sender.resend_unknown
            sender.resend([seq])  # resent, or refused for the budget: either way still kept
            if sender.resend_unknown == unknown:
                kept.append(seq)
        again = received(listener)
    finally:
        listener.close()
        out.close()
    size = len(sent[0])
    assert kept == list(range(kept[0], pump.HISTORY_SLOTS))  # the newest, in one run…
    assert pump.HISTORY_BYTES // size - 1 <= len(kept) <= pump.HISTORY_BYTES // size  # …as many as fit
    assert again and again == [sent[seq] for seq in kept[:len(again)]]  # none damaged by the wrap
    assert sum(map(len, again)) <= pump.RESEND_BURST  # the budget saved up is capped


def test_a_retargeted_sender_keeps_its_numbering_and_history() -> None:
    profile, key = pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80, os.urandom(30)
    sender, listener, out = sender_and_listener(profile, key)
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.bind(("127.0.0.1", 0))
    try:
        sender.send(b"a" * 40, 0, True)
        first = received(listener)
        sender.retarget(out.fileno(), "127.0.0.1", other.getsockname()[1])
        sender.send(b"b" * 40, 960, True)
        assert sender.resend([100]) == 1
        moved = received(other)
        with pytest.raises(ValueError):
            sender.retarget(out.fileno(), "nowhere", 9)
    finally:
        listener.close()
        out.close()
        other.close()
    theirs = pylib(profile, key, False)
    assert [RtpPacket.parse(theirs.unprotect(d)).sequence_number for d in moved[:1]] == [101]
    assert moved[1] == first[0]
