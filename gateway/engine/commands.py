"""The work an engine session orders from its runner: transcribe a turn, generate a reply, stop one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Respond:
    """Generate a reply; the prompt is built when it runs, after earlier turns are transcribed.
    ``tools``: the session's function definitions (OpenAI's shape); ``tool_choice`` "auto",
    "none", "required" or a function's name."""

    response_id: str
    instructions: str
    audio: bool
    voice: str | None = None
    speed: float = 1.0
    max_tokens: int | None = None
    tools: tuple[dict[str, Any], ...] = field(default=())
    tool_choice: str = "auto"


@dataclass(frozen=True)
class Transcribe:
    """Transcribe a committed turn, or (``item_id`` None) start early on a turn that may go on.
    The same ``audio_key`` means the same audio: the early result answers the commit. An early
    one may carry the ``draft`` of the reply the turn will get if it ends here (its
    ``response_id`` is a placeholder): the runner may start on it before the turn ends."""

    item_id: str | None
    pcm: np.ndarray
    language: str | None
    audio_key: tuple[float, float]
    draft: Respond | None = None
    partial: bool = False  # the user is still talking: only to let the LLM read the words so far
    prompt: str | None = None  # the session's transcription prompt (None: the engine's generic context)


@dataclass(frozen=True)
class DropEarly:
    """The user spoke again after a pause: what was started early for it (a transcription, a
    drafted reply) no longer matches the turn."""


@dataclass(frozen=True)
class Cancel:
    response_id: str


Command = Transcribe | DropEarly | Respond | Cancel
