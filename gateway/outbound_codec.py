"""Encoding the assistant's voice ourselves: mono voice Opus with in-band FEC, tuned to the loss
the browser reports.

aiortc's own encoder upmixes to stereo at a fixed 96 kbps without FEC and runs in the default
thread pool. The outbound track hands aiortc pre-encoded packets instead (its sender only
packetizes an ``av.Packet``), encoded here in the event loop at a voice bitrate.
"""

from __future__ import annotations

import asyncio
import fractions
import logging

import numpy as np
from aiortc import RTCRtpSender
from av.packet import Packet

from .opus import OpusEncoder

logger = logging.getLogger(__name__)
TIME_BASE = fractions.Fraction(1, 48000)


class OpusPacketizer:
    """``packetize(pcm, pts)`` for :class:`~gateway.outbound_audio.OutboundAudioTrack`."""

    def __init__(self, bitrate: int = 32000) -> None:
        self.encoder = OpusEncoder(bitrate=bitrate, fec=True, loss_percent=LossEstimator.FLOOR)

    def __call__(self, pcm: np.ndarray, pts: int) -> Packet:
        packet = Packet(self.encoder.encode(pcm))
        packet.pts = pts
        packet.time_base = TIME_BASE
        return packet


class LossEstimator:
    """Expected loss for the encoder from RTCP ``fraction lost`` reports (0–255 per interval).

    Rises at once (a burst is when FEC matters) and decays slowly; never below FLOOR, so a first
    loss already finds some redundancy in the stream.
    """

    FLOOR = 5
    CEILING = 30

    def __init__(self) -> None:
        self.percent = float(self.FLOOR)

    def update(self, fraction_lost: int) -> int:
        observed = fraction_lost * 100 / 256
        self.percent = observed if observed > self.percent else 0.8 * self.percent + 0.2 * observed
        self.percent = min(self.CEILING, max(self.FLOOR, self.percent))
        return round(self.percent)


async def follow_loss_reports(sender: RTCRtpSender, encoder: OpusEncoder, interval: float = 2.0) -> None:
    """Owned by the call: poll the browser's receiver reports and retune the encoder."""
    estimator = LossEstimator()
    while True:
        await asyncio.sleep(interval)
        stats = await sender.getStats()
        for report in stats.values():
            if report.type == "remote-inbound-rtp" and report.fractionLost is not None:
                percent = estimator.update(report.fractionLost)
                if percent != encoder.loss_percent:
                    logger.info("browser reports %.1f%% loss: encoder expects %d%%",
                                report.fractionLost * 100 / 256, percent)
                    encoder.set_packet_loss_perc(percent)
