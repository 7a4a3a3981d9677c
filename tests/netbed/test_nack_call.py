"""Across a real lossy link (network namespaces): a sender without FEC that answers NACKs.

The client is aiortc's own encoder (no in-band FEC: a lost packet is a lost 20 ms) offering
``a=rtcp-fb:<opus> nack``; aiortc's sender resends from its RTP history when asked. The gateway
answers the NACK feedback, asks for each lost packet once, and its jitter buffer waits for the
resend instead of concealing while the round trip allows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.audio_tools import DATA, read_wav
from tests.netbed.bed import NetBed, require
from tests.netbed.scenario import run_call

pytestmark = pytest.mark.netns
SPEECH = DATA / "pt_br_historia.wav"


def envelope(pcm: np.ndarray, frame: int = 960) -> np.ndarray:
    """RMS of each 40 ms frame (24 kHz)."""
    frames = pcm[: len(pcm) // frame * frame].reshape(-1, frame).astype(np.float64)
    return np.sqrt((frames ** 2).mean(axis=1))


def aligned_correlation(sent: np.ndarray, received: np.ndarray, hop: int = 120) -> float:
    """Pearson correlation of the sent speech's energy envelope with the received one's, at the
    offset (searched in 5 ms steps) where they match best: the received audio has silence before."""
    a = envelope(sent)
    return max(float(np.corrcoef(a, envelope(received[lag:lag + len(sent)]))[0, 1])
               for lag in range(0, len(received) - len(sent) + 1, hop))


def test_lost_packets_of_a_sender_without_fec_come_back_by_retransmission(tmp_path: Path) -> None:
    require()
    with NetBed(seed=17) as bed:
        bed.set_delay(20, jitter_ms=5)
        bed.set_loss(10)  # each way: NACKs and resends are lost too
        summary, audio, client = run_call(bed, tmp_path, [SPEECH],
                                          client_args=["--sender", "aiortc", "--offer-nack", "--tuned-timers"])
    frames, nack = summary["mic_frames"], summary["mic_nack"]
    print(f"mic frames {frames}; NACK {nack}; jitter buffer {summary['jitter_buffer_ms']}; client {client}")
    assert client["nack_answered"]  # the answer has a=rtcp-fb:<opus> nack
    assert nack["nacked"] > 0.05 * frames["sent_by_peer"]  # the loss happened, each lost packet asked for
    assert nack["resent"] > 0.5 * nack["nacked"]  # most came back in time to play as themselves
    assert nack["lost"] < 0.5 * nack["nacked"]  # (never arrived: the NACK or its resend was lost too)
    rebuilt = frames.get("concealed", 0) + frames.get("fec", 0)
    assert rebuilt < nack["resent"]
    assert summary["jitter_buffer_ms"]["p95"] <= 100  # 80 ms goal, slack for a busy machine
    sent, _ = read_wav(SPEECH)
    received, _ = read_wav(audio)
    correlation = aligned_correlation(sent, received)
    print(f"energy envelope correlation {correlation:.3f}")
    assert correlation > 0.9  # the speech itself arrived, syllable by syllable
    assert len(received) >= len(sent) + 24000  # and all of it, with the silence around it
