"""Reply text as a TTS reads it: what is speakable, and where a stream of it may be cut.

Cuts fall at sentence ends, clause ends or word ends (after "a", "de", "e"… only when nothing
else avoids a silence): the planner in ``speech_plan.py`` picks among them by how much audio is
playing ahead.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

_SENTENCE_END = re.compile(r"[.!?…]+[\"')\]]*(?P<space>\s|$)")
_CLAUSE_END = re.compile(r"(?:[,;:]|\s[—–-])(?P<space>\s|$)")
_WORD_END = re.compile(r"\S+(?P<space>\s|$)")
_FUNCTION_WORDS = frozenset(
    "a o as os um uma uns umas de do da dos das em no na nos nas por pelo pela para pra com e ou que "
    "se ao aos à às mas nem seu sua meu minha the of and to".split())
_UNSPEAKABLE = re.compile(r"[*#_`~>|\[\]{}<>]|[\U0001F000-\U0001FAFF\u2600-\u27BF]")
# The first piece is what the user waits for: it may end at a comma, or after a few words even
# without one (synthesis time grows with length; the planner sizes the next pieces).
FIRST_CLAUSE_MIN_WORDS = 2
FIRST_PIECE_MAX_WORDS = 3  # fewer sound chopped: "A capital" alone loses the sentence's Portuguese prosody


def speakable(text: str) -> str:
    """What a TTS should read: no markdown, emoji or line structure."""
    return re.sub(r"\s+", " ", _UNSPEAKABLE.sub(" ", text)).strip()


class Cut(enum.IntEnum):
    """How good a place to cut is (higher is better: a sentence end sounds like one; after "de"
    or "que" only to avoid a silence)."""

    FORCED = 0
    WORD = 1
    CLAUSE = 2
    SENTENCE = 3


@dataclass(frozen=True)
class Boundary:
    end: int  # index just after the cut (the whitespace after it included)
    kind: Cut
    words: int  # words before the cut


def boundaries(text: str, final: bool) -> list[Boundary]:
    """Every place ``text`` may be cut, in order. A boundary needs the whitespace after it (the
    next token may still extend the word), except at the end of ``final`` text."""
    found: dict[int, Cut] = {}
    for match in _WORD_END.finditer(text):
        word = match.group().strip().strip(".,;:!?…\"')(").lower()
        if match.group("space") or final:
            found[match.end()] = Cut.FORCED if word in _FUNCTION_WORDS else Cut.WORD
    for pattern, kind in ((_CLAUSE_END, Cut.CLAUSE), (_SENTENCE_END, Cut.SENTENCE)):
        for match in pattern.finditer(text):
            if match.group("space") or final:
                found[match.end()] = max(kind, found.get(match.end(), kind))
    if final and text.strip():
        found[len(text)] = max(Cut.SENTENCE, found.get(len(text), Cut.SENTENCE))
    return [Boundary(end, kind, len(text[:end].split())) for end, kind in sorted(found.items())]


def first_piece_end(text: str, final: bool, min_chars: int = 0) -> int | None:
    """Where the first piece of a reply ends, as soon as the stream allows: a clause of at least
    FIRST_CLAUSE_MIN_WORDS, a short sentence, or FIRST_PIECE_MAX_WORDS words — and at least
    ``min_chars`` long (a lone "Oi!" plays too briefly to cover the next piece's synthesis);
    None = wait."""
    cuts = [c for c in boundaries(text, final)
            if c.kind is not Cut.FORCED and len(speakable(text[:c.end])) >= min_chars]
    for cut in cuts:
        if cut.kind is Cut.CLAUSE and cut.words >= FIRST_CLAUSE_MIN_WORDS:
            return cut.end
        if cut.kind is Cut.SENTENCE and cut.words <= FIRST_PIECE_MAX_WORDS + 2:
            return cut.end
        if cut.words >= FIRST_PIECE_MAX_WORDS and cut.kind is Cut.WORD:
            return cut.end
        if cut.kind is Cut.SENTENCE:
            return cut.end
    return len(text) if final and text.strip() else None
