"""Where to cut a streamed reply into pieces for the TTS, so the listener never waits mid-reply.

The TTS is not streaming: a piece's audio exists once the whole piece is synthesized, and
synthesis costs a fixed overhead plus a share of the audio's length. So the first piece is
short (the user is waiting for it), and every later piece is sized in *audio time*: it must be
synthesized before the audio already sent has played out (allowing ``gap_s`` of silence, a
pause a listener takes for a breath), so it is as long as that budget allows — a whole
sentence once enough audio is ahead, a clause or a few words while little is. With more text
than the budget, it cuts at the best boundary that fits; with less, it waits for the LLM until
the deadline, then cuts what it has.

:class:`SynthesisCost` learns the TTS's speed from each piece (the machine may be busy);
:class:`SpeechPlanner` is sans-I/O: the runner passes ``now`` and reports what was sent.
"""

from __future__ import annotations

from dataclasses import dataclass

from .speech_text import Boundary, Cut, boundaries, first_piece_end, speakable

MAX_PIECE_CHARS = 300  # Kokoro reads at most ~500 phonemes at once
WAIT_STEP_S = 0.05  # waiting for text ends this long before the deadline
MIN_FIRST_PIECE_S = 0.25  # "Olá!" is long enough to start on; "Oi!" is not
MIN_PIECE_CHARS = 9  # later pieces: a couple of words ("do Brasil"): each is intoned as an utterance


@dataclass
class SynthesisCost:
    """Seconds of audio per character, and seconds of synthesis per piece (overhead + rtf × audio),
    fitted to what the TTS did (moving averages; starting from this machine class's figures).
    Kokoro's overhead is large — it synthesizes ~0.6 s of padding silence with every piece — so
    both terms are learned: a line through (audio, time) of the recent pieces."""

    audio_per_char_s: float = 0.068
    overhead_s: float = 0.08  # an optimistic overhead makes the slope, and so long pieces, pessimistic
    rtf: float = 0.6
    weight: float = 0.25  # of the newest observation
    _moments: list[float] | None = None  # moving means of d, t, d², d·t

    def audio_s(self, text: str) -> float:
        return len(speakable(text)) * self.audio_per_char_s

    def synthesis_s(self, text: str) -> float:
        return self.overhead_s + self.rtf * self.audio_s(text)

    def observe(self, text: str, audio_s: float, took_s: float) -> None:
        chars = len(speakable(text))
        if chars < 3 or audio_s <= 0.05:
            return
        w = self.weight
        self.audio_per_char_s = (1 - w) * self.audio_per_char_s + w * audio_s / chars
        sample = [audio_s, took_s, audio_s * audio_s, audio_s * took_s]
        if self._moments is None:
            self._moments = sample
        else:
            self._moments = [(1 - w) * m + w * x for m, x in zip(self._moments, sample, strict=True)]
        d, t, dd, dt = self._moments
        variance = dd - d * d
        if variance > 0.1:  # pieces of clearly different lengths: fit both terms
            self.rtf = min(3.0, max(0.05, (dt - d * t) / variance))
            self.overhead_s = min(1.5, max(0.0, t - self.rtf * d))
        else:  # one length so far: keep the overhead, scale the rest
            self.rtf = min(3.0, max(0.05, (1 - w) * self.rtf + w * (took_s - self.overhead_s) / audio_s))


class SpeechPlanner:
    """One reply: LLM text in (:meth:`push`, :meth:`end`), pieces to synthesize out
    (:meth:`next_piece`), audio sent reported back (:meth:`sent`)."""

    def __init__(self, cost: SynthesisCost, *, gap_s: float = 0.2, margin_s: float = 0.1) -> None:
        self.cost = cost
        self.gap_s = gap_s  # silence tolerated between two pieces
        self.margin_s = margin_s  # kept in hand against a wrong estimate
        self._text = ""
        self._ended = False
        self._pieces = 0
        self._playing_until: float | None = None  # when the audio sent so far ends, played as it arrives
        self._held_s = 0.0  # audio ready before playout started (a draft's)

    # --- inputs ------------------------------------------------------------------------------

    def push(self, text: str) -> None:
        self._text += text

    def end(self) -> None:
        self._ended = True

    def sent(self, audio_s: float, now: float | None) -> None:
        """A piece's audio is ready: sent at ``now``, or (None) held until :meth:`play`."""
        if now is None:
            self._held_s += audio_s
            return
        start = now if self._playing_until is None else max(self._playing_until, now)
        self._playing_until = start + audio_s

    def play(self, now: float) -> None:
        """Held audio starts playing now."""
        held, self._held_s = self._held_s, 0.0
        if held:
            self.sent(held, now)

    # --- decisions -----------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self._ended and not speakable(self._text)

    @property
    def pieces(self) -> int:
        return self._pieces

    def ahead_s(self, now: float) -> float:
        """Audio sent that has not played yet (held audio counts whole: its clock has not started)."""
        playing = 0.0 if self._playing_until is None else max(0.0, self._playing_until - now)
        return playing + self._held_s

    def budget_s(self, now: float) -> float:
        """How long the next piece's synthesis may take, starting now."""
        return self.ahead_s(now) + self.gap_s - self.margin_s

    def next_piece(self, now: float) -> str | None:
        """The next piece to synthesize (the TTS is free), or None to wait for more text."""
        end = self._choose(now)
        if end is None:
            return None
        piece, self._text = self._text[:end], self._text[end:]
        self._pieces += 1
        return piece.strip()

    def next_words(self) -> str | None:
        """For a text-only reply: every complete word so far (no synthesis to plan for)."""
        cuts = self._cuts()
        if not cuts or not speakable(self._text[:cuts[-1].end]):
            return None
        piece, self._text = self._text[:cuts[-1].end], self._text[cuts[-1].end:]
        self._pieces += 1
        return piece.strip()

    def wake_at(self, now: float) -> float | None:
        """When waiting for more text must stop and what is there be cut (None: only new text or
        the end can change the decision)."""
        if self._pieces == 0 or self._ended:
            return None
        fitting = self._fitting(now)
        if not fitting:
            return None
        return now + max(0.0, self.budget_s(now) - self.cost.synthesis_s(self._text[:fitting[-1].end]) - WAIT_STEP_S)

    def _cuts(self) -> list[Boundary]:
        """Where the next piece may end: not before MIN_PIECE_CHARS (a lone "é" or "do" costs a
        synthesis' whole overhead and is not said right on its own), unless a sentence or the reply
        ends there ("Sim." is an utterance of its own)."""
        text = self._text
        words = self._words()
        cuts = [c for c in words if len(speakable(text[:c.end])) >= MIN_PIECE_CHARS or c.kind is Cut.SENTENCE
                or (self._ended and not speakable(text[c.end:]))]
        # Only short words so far ("Sol é é…"): any of them may end the piece, so the deadline
        # still holds — a short piece when it is due beats a silence.
        return cuts or words

    def _words(self) -> list[Boundary]:
        """Every boundary that ends a speakable piece, however short."""
        text = self._text
        return [c for c in boundaries(text, self._ended) if c.end <= MAX_PIECE_CHARS and speakable(text[:c.end])]

    def _fitting(self, now: float) -> list[Boundary]:
        """The cuts whose synthesis ends in time; when none does, the short ones that would and
        still play long enough to cover the next one (a few words now rather than a sentence late;
        a lone "A" would only move the silence)."""
        budget, cost, text = self.budget_s(now), self.cost, self._text
        fitting = [c for c in self._cuts() if cost.synthesis_s(text[:c.end]) <= budget]
        return fitting or [c for c in self._words() if cost.synthesis_s(text[:c.end]) <= budget
                           and cost.audio_s(text[:c.end]) >= MIN_FIRST_PIECE_S]

    def _choose(self, now: float) -> int | None:
        text = self._text
        if not speakable(text):
            return len(text) if self._ended and text else None
        if self._pieces == 0:
            return first_piece_end(text, self._ended, round(MIN_FIRST_PIECE_S / self.cost.audio_per_char_s))
        cuts = self._cuts()
        if not cuts:
            return min(len(text), MAX_PIECE_CHARS) if self._ended or len(text) > MAX_PIECE_CHARS else None
        fitting = self._fitting(now)
        if self._ended and fitting and fitting[-1].end == len(text):
            return len(text)  # the rest fits: one piece
        sentences = [c for c in fitting if c.kind is Cut.SENTENCE]
        if sentences:
            return sentences[-1].end
        if not fitting:
            return cuts[0].end  # late whatever we do: the shortest piece is ready soonest
        longest = fitting[-1]
        if not self._ended and self.cost.synthesis_s(text[:longest.end]) < self.budget_s(now) - WAIT_STEP_S:
            return None  # the deadline is not here yet: wait for the rest of the sentence
        for kind in (Cut.CLAUSE, Cut.WORD):  # the best sounding cut that still makes a fair piece
            good = [c for c in fitting if c.kind >= kind and c.end * 2 >= longest.end]
            if good:
                return good[-1].end
        return longest.end
