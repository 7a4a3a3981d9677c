"""What a call reports when it ends: one log line, and the figures the metrics count."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class CallSummary:
    """What one log line per call reports at hang-up."""

    reason: str
    duration_s: float
    upstream_connect_ms: float | None
    session_ready_ms: float | None
    turns: int
    interruptions: int
    audio_in_s: float
    audio_out_s: float
    turn_latency_ms: dict[str, float] = field(default_factory=dict)  # p50 / p90 / max
    mic_frames: dict[str, int] = field(default_factory=dict)  # by origin: decoded / fec / concealed
    dropped_frames: int = 0  # mic frames not sent: the upstream was not keeping up
    reply_dropped_s: float = 0.0  # model audio beyond the playout queue's bound, never played
    refused_events: int = 0  # client events refused because the upstream send queue was full
    jitter_buffer_ms: dict[str, float] = field(default_factory=dict)  # p50 / p95 of held-back delay

    def log_line(self) -> str:
        def fmt(values: dict[str, float]) -> str:
            return "/".join(f"{v:.0f}" for v in values.values()) or "-"

        return (f"call ended: reason={self.reason} duration={self.duration_s:.1f}s turns={self.turns} "
                f"interruptions={self.interruptions} audio_in={self.audio_in_s:.1f}s "
                f"audio_out={self.audio_out_s:.1f}s turn_latency_ms(p50/p90/max)={fmt(self.turn_latency_ms)} "
                f"mic_frames={self.mic_frames or '-'} dropped_frames={self.dropped_frames} "
                f"reply_dropped={self.reply_dropped_s:.1f}s refused_events={self.refused_events} "
                f"jitter_buffer_ms(p50/p95)={fmt(self.jitter_buffer_ms)} "
                f"upstream_connect_ms={_ms(self.upstream_connect_ms)} session_ready_ms={_ms(self.session_ready_ms)}")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"
