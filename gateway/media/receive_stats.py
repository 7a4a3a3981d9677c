"""What the caller's network did to the mic stream, as the own receive path reports it (split from
:mod:`gateway.media.audio_receiver`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class ReceiveStats:
    """What the caller's network did to the mic stream, for logs and metrics."""

    packets_sent: int  # numbered by the browser
    packets_lost: int  # never arrived
    late: int  # arrived after their frame was rebuilt
    duplicate: int
    fec_packets: int  # received packets carrying in-band FEC (proof the browser sends it)
    frames_decoded: int
    frames_fec: int  # rebuilt from the next packet's FEC
    frames_concealed: int  # invented for lost packets
    frames_inserted: int  # invented for time without packets (stalls, DTX)
    decode_errors: int
    jitter_buffer_ms: dict[str, float]  # p50 / p95 of the time received packets were held
    target_delay_ms: float  # how long a missing packet is waited for now (follows the jitter)
    red_packets: int = 0  # received RED packets (RFC 2198) that carried copies of earlier frames
    frames_red: int = 0  # lost frames rebuilt at full quality from a later packet's RED copy
    frames_over_budget: int = 0  # frames the RTP asked for beyond real time (lying numbering, floods): not sent
    ssrc_changes: int = 0
    packets_refused: int = 0  # dropped before decryption: unfollowed SSRCs, beyond the packet rate

    @property
    def loss(self) -> float:
        return self.packets_lost / self.packets_sent if self.packets_sent else 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"loss": round(self.loss, 4)}
