"""Turning a stream of LLM text into pieces worth synthesizing, as early as they are complete."""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"[.!?…]+[\"')\]]*\s")
_CLAUSE_END = re.compile(r"[,;:]\s")
_FUNCTION_WORDS = frozenset(
    "a o as os um uma uns umas de do da dos das em no na nos nas por pelo pela para pra com e ou que "
    "se ao aos à às mas nem seu sua meu minha the of and to".split())
_UNSPEAKABLE = re.compile(r"[*#_`~>|\[\]{}<>]|[\U0001F000-\U0001FAFF\u2600-\u27BF]")
# The first piece is what the user waits for: it may end at a comma, or after a few words even
# without one (synthesis time grows with length; the next piece is ready before this one ends).
FIRST_CLAUSE_MIN_WORDS = 2
FIRST_PIECE_MAX_WORDS = 3


def speakable(text: str) -> str:
    """What a TTS should read: no markdown, emoji or line structure."""
    return re.sub(r"\s+", " ", _UNSPEAKABLE.sub(" ", text)).strip()


class SentenceSplitter:
    def __init__(self) -> None:
        self._buffer = ""
        self._emitted = 0

    def push(self, text: str) -> list[str]:
        """Complete pieces found after adding ``text``."""
        self._buffer += text
        pieces: list[str] = []
        while True:
            end = self._piece_end()
            if end is None:
                return pieces
            piece, self._buffer = self._buffer[:end], self._buffer[end:]
            if speakable(piece):
                pieces.append(piece.strip())
                self._emitted += 1

    def _piece_end(self) -> int | None:
        match = _SENTENCE_END.search(self._buffer)
        if self._emitted:
            return match.end() if match else None
        clause = _CLAUSE_END.search(self._buffer)
        if clause and len(self._buffer[:clause.end()].split()) >= FIRST_CLAUSE_MIN_WORDS:
            if match is None or clause.end() < match.end():
                return clause.end()
        if match is not None and len(self._buffer[:match.end()].split()) <= FIRST_PIECE_MAX_WORDS + 2:
            return match.end()
        words = list(re.finditer(r"\S+\s", self._buffer))
        for index in range(FIRST_PIECE_MAX_WORDS - 1, len(words) - 1):
            if words[index].group().strip().lower() not in _FUNCTION_WORDS:  # never stop on "a", "de"…
                return words[index].end()
        return match.end() if match else None

    def flush(self) -> list[str]:
        rest, self._buffer = self._buffer.strip(), ""
        return [rest] if speakable(rest) else []
