"""The two audio formats a call joins, in one place.

WebRTC's Opus runs on a 48 kHz clock; the Realtime protocol's ``audio/pcm`` is 24 kHz mono
little-endian int16. Everything moves in 20 ms frames.
"""

from __future__ import annotations

WEBRTC_RATE = 48000  # Opus RTP clock and aiortc's decoded frames
UPSTREAM_RATE = 24000  # Realtime GA ``audio/pcm``
FRAME_MS = 20
WEBRTC_FRAME = WEBRTC_RATE * FRAME_MS // 1000  # 960 samples
UPSTREAM_FRAME = UPSTREAM_RATE * FRAME_MS // 1000  # 480 samples
FRAME_S = FRAME_MS / 1000


def upstream_ms(samples: int) -> float:
    """Milliseconds of ``samples`` at the upstream's rate."""
    return samples * 1000 / UPSTREAM_RATE
