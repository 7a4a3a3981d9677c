"""Encoding the assistant's voice ourselves: mono voice Opus with in-band FEC, tuned to the loss
the browser reports.

aiortc's own encoder upmixes to stereo at a fixed 96 kbps without FEC and runs in the default
thread pool. Its sender also accepts a pre-encoded ``av.Packet`` from ``track.recv()`` and only
packetizes it (``RTCRtpSender._next_encoded_frame`` → ``OpusEncoder.pack``), so the outbound
track hands it packets from :class:`OpusPacketizer`, encoded in the event loop at a voice
bitrate, capped at super-wideband: the assistant's voice is 24 kHz audio, so nothing above
12 kHz is worth bits, and below full band libopus adds FEC at 32 kbps from 1 % expected loss
(full band needs ~40 kbps before it does). Digital silence (the assistant idle) is not encoded at all once the encoder has settled
into it: the same silence packet is sent again, which is what the decoder would have got anyway.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
from collections.abc import Callable

import numpy as np
from aiortc import RTCRtpSender
from av.packet import Packet

from ..core.audio_format import WEBRTC_FRAME, WEBRTC_RATE
from .opus import OpusEncoder

logger = logging.getLogger(__name__)
TIME_BASE = fractions.Fraction(1, WEBRTC_RATE)
SILENCE_SETTLE_FRAMES = 3  # zero frames encoded before the silence packet is reused


class LossEstimator:
    """Expected loss for the encoder from RTCP ``fraction lost`` reports (0–255 per interval).

    Rises at once (a burst is when FEC matters) and decays slowly; never below ``FLOOR``, so the
    first loss already finds redundancy in the stream, never above ``CEILING`` (beyond it the
    redundancy would starve the speech itself). Sans-I/O.
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


class OpusPacketizer:
    """20 ms of 48 kHz mono int16 → an Opus ``av.Packet`` for aiortc's sender.

    Called as ``packetize(pcm, pts)`` by :class:`~gateway.media.outbound_audio.OutboundAudioTrack`, or
    :meth:`packet` with its own running timestamp.
    """

    def __init__(self, *, bitrate: int = 32000, complexity: int = 5, loss_percent: int = LossEstimator.FLOOR) -> None:
        self.encoder = OpusEncoder(bitrate=bitrate, complexity=complexity, fec=True, loss_percent=loss_percent,
                                   max_bandwidth="superwideband")
        self._zero_frames = 0
        self._silence: bytes | None = None
        self._pts = 0
        self.frames_encoded = 0
        self.frames_silent = 0  # sent as the settled silence packet, without encoding

    def __call__(self, pcm: np.ndarray, pts: int) -> Packet:
        packet = Packet(self.payload(pcm))
        packet.pts = pts
        packet.time_base = TIME_BASE
        return packet

    def packet(self, pcm: np.ndarray) -> Packet:
        packet = self(pcm, self._pts)
        self._pts += WEBRTC_FRAME
        return packet

    def payload(self, pcm: np.ndarray) -> bytes:
        if pcm.any():
            self._zero_frames = 0
        else:
            self._zero_frames += 1
            if self._zero_frames > SILENCE_SETTLE_FRAMES and self._silence is not None:
                self.frames_silent += 1
                return self._silence
        self.frames_encoded += 1
        payload = self.encoder.encode(pcm)
        if self._zero_frames == SILENCE_SETTLE_FRAMES:
            self._silence = payload
        return payload


async def follow_loss_reports(sender: RTCRtpSender, encoder: OpusEncoder, interval: float = 2.0, *,
                              on_report: Callable[[int], None] | None = None) -> None:
    """Owned by the call: read the browser's receiver reports and retune the encoder's FEC
    (and, through ``on_report(fraction_lost)``, whatever else follows the loss: RED).

    aiortc keeps the latest RTCP receiver report of the browser in the sender's stats
    (``remote-inbound-rtp``); reading it every ``interval`` costs microseconds.
    """
    estimator = LossEstimator()
    while True:
        await asyncio.sleep(interval)
        try:
            stats = await sender.getStats()
        except Exception:  # a closing transport: the call's teardown is on its way
            logger.debug("sender stats unavailable", exc_info=True)
            continue
        for report in stats.values():
            if report.type == "remote-inbound-rtp" and report.fractionLost is not None:
                if on_report is not None:
                    on_report(report.fractionLost)
                percent = estimator.update(report.fractionLost)
                if percent != encoder.loss_percent:
                    logger.info("browser reports %.1f%% loss: encoder expects %d%%",
                                report.fractionLost * 100 / 256, percent)
                    encoder.set_packet_loss_perc(percent)
