"""Beta-dialect session fields a client may still send, mapped to their GA places.

The gateway speaks the GA dialect to every upstream, and GA OpenAI refuses the beta names
(``Unknown parameter: 'session.voice'``). Clients written against the beta — and examples that
still circulate — send ``voice``, ``input_audio_transcription``, ``turn_detection``,
``input_audio_noise_reduction``, ``modalities`` at the top of the session: those move to their
GA paths (a GA field sent alongside wins), so the policy sees, and the upstream gets, one
dialect. ``temperature`` has no GA place and is dropped. Sans-I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .policy import merge_session

# beta name → GA dotted path, for a session.update's session.
SESSION_FIELDS = {
    "modalities": "output_modalities",
    "voice": "audio.output.voice",
    "speed": "audio.output.speed",
    "input_audio_format": "audio.input.format",
    "output_audio_format": "audio.output.format",
    "input_audio_transcription": "audio.input.transcription",
    "input_audio_noise_reduction": "audio.input.noise_reduction",
    "turn_detection": "audio.input.turn_detection",
    "max_response_output_tokens": "max_output_tokens",
}
# The same for a response.create's response (the beta had per-response voice and formats too).
RESPONSE_FIELDS = {key: SESSION_FIELDS[key] for key in
                   ("modalities", "voice", "output_audio_format", "max_response_output_tokens")}
DROPPED = ("temperature",)


def _modalities(value: Any) -> Any:
    """Beta ``["audio", "text"]`` (audio with its transcript) is GA ``["audio"]``."""
    if isinstance(value, list) and "audio" in value:
        return ["audio"]
    return value


def to_ga(fields: Any, table: Mapping[str, str] = SESSION_FIELDS) -> tuple[Any, list[str]]:
    """``fields`` with beta names moved to their GA paths, and the beta names that were found."""
    if not isinstance(fields, Mapping) or not any(key in fields for key in (*table, *DROPPED)):
        return fields, []
    found = [key for key in fields if key in table or key in DROPPED]
    overlay: dict[str, Any] = {}
    for key in found:
        if key in table:
            *parents, leaf = table[key].split(".")
            node = overlay
            for parent in parents:
                node = node.setdefault(parent, {})
            node[leaf] = _modalities(fields[key]) if key == "modalities" else fields[key]
    rest = {key: value for key, value in fields.items() if key not in found}
    return merge_session(overlay, rest), found  # GA fields win; the client's objects are not written to
