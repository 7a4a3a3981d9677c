"""The work an engine session orders from its runner: transcribe a turn, generate a reply, stop one."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Transcribe:
    """Transcribe a committed turn, or (``item_id`` None) start early on a turn that may go on.
    The same ``audio_key`` means the same audio: the early result answers the commit."""

    item_id: str | None
    pcm: np.ndarray
    language: str | None
    audio_key: tuple[float, float]


@dataclass(frozen=True)
class Respond:
    """Generate a reply; the prompt is built when it runs, after earlier turns are transcribed."""

    response_id: str
    instructions: str
    audio: bool
    voice: str | None = None
    speed: float = 1.0
    max_tokens: int | None = None


@dataclass(frozen=True)
class Cancel:
    response_id: str


Command = Transcribe | Respond | Cancel
