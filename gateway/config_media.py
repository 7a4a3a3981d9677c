"""Settings of the audio: receive and media paths, what the mic may cost, RED, NACK, playout.

Used by ``gateway/media/`` (receiver, budget, NACK, RED, the native path) and ``core/playout.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config_parse import Setting, check, check_choice, check_range, parse_bool


@dataclass(frozen=True)
class MediaSettings:
    # Who turns the mic's RTP into audio: the gateway's own path (FEC, concealment, no added
    # delay) or aiortc's (fixed 80 ms buffer, no FEC) for comparison.
    receive_path: str = "gateway"
    # Who moves a call's RTP once DTLS is up: native (C: libsrtp2, batched receive, one pacing
    # timer for all calls; see media/native/) or python (aiortc's per-packet path). auto: native
    # when the extension is built (scripts/setup_native.sh), else python with a warning. The
    # default stays python until native passes the whole suite (20 concurrent calls in one
    # process still lose a reply: see the native-media notes).
    media_path: str = "auto"  # native where scripts/setup_native.sh built it (scripts/setup.sh does), else python
    # What a browser's mic may cost upstream (the own receive path; see media/audio_receiver.py):
    # audio ahead of the wall clock, concealment after the mic's packets stop, new SSRCs followed.
    mic_burst_ms: int = 200
    mic_silence_stop_s: float = 2.0
    mic_max_ssrc_changes: int = 4
    # RED (RFC 2198) with browsers that offer it, both ways (see webrtc/red_audio.py).
    red: bool = True
    # Generic NACK (RFC 4585) for mic packets the sender offered to retransmit: asked for once,
    # and a gap whose packet was asked for waited for up to this long (see media/nack.py).
    mic_nack: bool = True
    mic_nack_max_wait_ms: int = 80
    # NACK answered for the mic even when the offer has none: Chromium offers no NACK for Opus,
    # yet its audio sender keeps its packets and resends them once the answer has it, so what RED
    # cannot carry (a burst) may come back (see webrtc/nack_sdp.py). Needs mic_nack.
    mic_nack_browsers: bool = True
    # Browser playout delay assumed when computing how much of a reply was heard.
    playout_delay_ms: int = 60
    # Model audio allowed to wait for playback (upstreams send faster than real time); beyond
    # it deltas are dropped. 120 s at 48 kHz is 11.5 MB per call at most.
    playout_max_queued_s: float = 120.0

    def _check_media(self) -> None:
        check_choice("RECEIVE_PATH", self.receive_path, ("gateway", "aiortc"))
        check_choice("MEDIA_PATH", self.media_path, ("auto", "native", "python"))
        if self.media_path == "native":
            from .media.native import available as native_unavailable
            problem = native_unavailable()
            check(problem is None, "MEDIA_PATH", f"is native, but {problem}")
        check_range("MIC_BURST_MS", self.mic_burst_ms, 40, 2000)
        check_range("MIC_SILENCE_STOP", self.mic_silence_stop_s, 0.5, 60, " s")
        check_range("MIC_MAX_SSRC_CHANGES", self.mic_max_ssrc_changes, 0, 100)
        check_range("MIC_NACK_MAX_WAIT_MS", self.mic_nack_max_wait_ms, 0, 500)
        check_range("PLAYOUT_MAX_QUEUED", self.playout_max_queued_s, 1, 3600, " s")

    @property
    def resolved_media_path(self) -> str:
        """auto means native when the extension is built here, else python."""
        if self.media_path == "auto":
            from .media.native import available as native_unavailable
            return "native" if native_unavailable() is None else "python"
        return self.media_path


MEDIA_SETTINGS: tuple[Setting, ...] = (
    Setting("--receive-path", "RECEIVE_PATH", "receive_path", str,
            "gateway (own jitter buffer, Opus FEC/concealment) or aiortc"),
    Setting("--media-path", "MEDIA_PATH", "media_path", str,
            ("auto (default: native if built, else python with a warning), native (C RTP/SRTP pump; "
             "refuses to start if not built) or python (aiortc's per-packet path)")),
    Setting("--mic-burst-ms", "MIC_BURST_MS", "mic_burst_ms", int,
            "mic audio (ms) the upstream may receive ahead of the wall clock; beyond it frames are dropped"),
    Setting("--mic-silence-stop", "MIC_SILENCE_STOP", "mic_silence_stop_s", float,
            "seconds without mic packets after which no more concealment is sent upstream"),
    Setting("--mic-max-ssrc-changes", "MIC_MAX_SSRC_CHANGES", "mic_max_ssrc_changes", int,
            "new mic SSRCs a browser connection may switch to; later ones are ignored"),
    Setting("--red", "RED", "red", parse_bool,
            "RED audio redundancy (RFC 2198) both ways with browsers that offer it (false: plain Opus)"),
    Setting("--mic-nack", "MIC_NACK", "mic_nack", parse_bool,
            "ask senders that offer NACK for audio to resend lost mic packets (RFC 4585)"),
    Setting("--mic-nack-max-wait-ms", "MIC_NACK_MAX_WAIT_MS", "mic_nack_max_wait_ms", int,
            "longest wait (ms) for a resent mic packet before concealing it (0: ask, never wait)"),
    Setting("--mic-nack-browsers", "MIC_NACK_BROWSERS", "mic_nack_browsers", parse_bool,
            "answer NACK for the mic even when the offer has none (Chromium resends audio once answered)"),
    Setting("--playout-delay-ms", "PLAYOUT_DELAY_MS", "playout_delay_ms", int,
            "assumed browser playout delay when truncating an interrupted reply"),
    Setting("--playout-max-queued", "PLAYOUT_MAX_QUEUED", "playout_max_queued_s", float,
            "seconds of model audio that may wait for playback; later audio of a longer backlog is dropped"),
)
