"""Settings of the session every call starts with: model, voice, instructions, turn detection.

:meth:`SessionSettings.default_session` is the GA ``session`` object sent upstream first; which of
its fields a client may change is ``locked_session_fields`` (enforced by ``core/policy.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .config_parse import Setting, check, check_range, parse_bool, parse_csv

# Seed phase 1.2: a pt-BR assistant asked for short, direct answers.
DEFAULT_INSTRUCTIONS = (
    "Você é um assistente de voz em português do Brasil. IMPORTANTE: dê respostas curtas e "
    "diretas, com no máximo duas ou três frases, sem listas nem formatação. Fale de forma "
    "natural e amigável e vá direto ao ponto."
)


@dataclass(frozen=True)
class TurnDetection:
    """Server VAD settings sent upstream (seed §3.1 by default, §1.1 as the "fast" preset)."""

    threshold: float = 0.3
    silence_duration_ms: int = 600
    prefix_padding_ms: int = 100
    create_response: bool = True
    interrupt_response: bool = True

    def to_session(self) -> dict[str, Any]:
        return {"type": "server_vad", **dataclasses.asdict(self)}


VAD_PRESETS: Mapping[str, TurnDetection] = {
    "default": TurnDetection(),
    "fast": TurnDetection(threshold=0.25, silence_duration_ms=200, prefix_padding_ms=50),
}


@dataclass(frozen=True)
class SessionSettings:
    model: str = "gpt-realtime"
    voice: str = "alloy"
    instructions: str = DEFAULT_INSTRUCTIONS
    transcription_model: str = "whisper-1"
    transcription_language: str = "pt"
    # Built from VAD_PRESET and the VAD_* settings by gateway.config.load_config.
    turn_detection: TurnDetection = TurnDetection()
    # Which session fields a client may not change (dotted paths, prefix match).
    locked_session_fields: tuple[str, ...] = ("model",)

    def _check_session(self) -> None:
        td = self.turn_detection
        check_range("VAD_THRESHOLD", td.threshold, 0.0, 1.0)
        check(td.silence_duration_ms > 0, "VAD_SILENCE_DURATION_MS", "must be > 0")
        check(td.prefix_padding_ms >= 0, "VAD_PREFIX_PADDING_MS", "must be >= 0")

    def default_session(self) -> dict[str, Any]:
        """The GA ``session`` object every call starts from."""
        return {
            "type": "realtime",
            "model": self.model,
            "instructions": self.instructions,
            "output_modalities": ["audio"],
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": 24000},
                    "transcription": {
                        "model": self.transcription_model,
                        "language": self.transcription_language,
                    },
                    "turn_detection": self.turn_detection.to_session(),
                },
                "output": {
                    "format": {"type": "audio/pcm", "rate": 24000},
                    "voice": self.voice,
                },
            },
        }


SESSION_SETTINGS: tuple[Setting, ...] = (
    Setting("--model", "OPENAI_MODEL", "model", str, "Realtime model"),
    Setting("--voice", "VOICE", "voice", str, "assistant voice"),
    Setting("--instructions", "INSTRUCTIONS", "instructions", str, "system instructions"),
    Setting("--transcription-model", "TRANSCRIPTION_MODEL", "transcription_model", str, "input transcription model"),
    Setting("--transcription-language", "TRANSCRIPTION_LANGUAGE", "transcription_language", str,
            "input transcription language"),
    Setting("--locked-session-fields", "LOCKED_SESSION_FIELDS", "locked_session_fields", parse_csv,
            "comma list of session fields clients may not change (e.g. model,instructions)"),
)

# Fields of TurnDetection (not of Config): applied on top of the VAD_PRESET named.
VAD_SETTINGS: tuple[Setting, ...] = (
    Setting("--vad-threshold", "VAD_THRESHOLD", "threshold", float, "speech probability threshold 0-1"),
    Setting("--vad-silence-duration-ms", "VAD_SILENCE_DURATION_MS", "silence_duration_ms", int,
            "silence that ends a turn"),
    Setting("--vad-prefix-padding-ms", "VAD_PREFIX_PADDING_MS", "prefix_padding_ms", int,
            "audio kept before detected speech"),
    Setting("--vad-create-response", "VAD_CREATE_RESPONSE", "create_response", parse_bool,
            "answer automatically at end of turn"),
    Setting("--vad-interrupt-response", "VAD_INTERRUPT_RESPONSE", "interrupt_response", parse_bool,
            "user speech interrupts the reply"),
)
