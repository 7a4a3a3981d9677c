"""Progress of the model join and check on first start, for a person at a terminal or a log.

The first start joins ~1.4 GB of model parts from PyPI packages and SHA-256-checks every file
(``models.materialize``); that takes a while, and a silent terminal looks hung. ``ModelProgress``
is ``materialize``'s progress callback: it shows bytes and files done, the speed and the time
left — on a terminal as one line rewritten in place (carriage return, at most ten times a
second), in a log (not a TTY) as one line per step: a file being joined, a file being checked,
a file ready. Later starts check files by their stamps, read nothing, and print one line.

``python -m gateway.engine.progress`` joins and checks the default models this way
(scripts/setup_engine.sh runs it). The clock is a parameter, so tests need not wait.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from .models import (
    KOKORO_INT8,
    LLMS,
    WHISPER_BASE,
    ModelError,
    PackagedFile,
    PackagedModel,
    default_cache_dir,
    installed,
    materialize,
)

PREFIX = "models"
REDRAW_S = 0.1  # a terminal line at most this often
ANNOUNCE_FROM = 20_000_000  # in a log, files this big get a line when each step begins (smaller: "ready" only)
BAR = 16  # characters of the terminal's bar


def size_text(nbytes: float) -> str:
    """1_117_320_768 → "1.12 GB" (decimal units, as disks and downloads count)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.2f} {unit}" if unit == "GB" else f"{nbytes / scale:.0f} {unit}"
    return f"{nbytes:.0f} B"


def duration_text(seconds: float) -> str:
    """0.3 → "under 1 s", 7.4 → "7 s", 192 → "3 min 12 s"."""
    if seconds < 0.5:
        return "under 1 s"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, rest = divmod(seconds, 60)
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"


class ModelProgress:
    """``materialize(model, cache_dir, progress=this)`` for each of ``models``, then ``finish()``."""

    def __init__(self, models: Sequence[PackagedModel], out: TextIO | None = None, *, tty: bool | None = None,
                 clock: Callable[[], float] = time.monotonic, columns: int | None = None,
                 announce_from: int = ANNOUNCE_FROM) -> None:
        self._out = out if out is not None else sys.stderr
        self._tty = self._out.isatty() if tty is None else tty
        self._clock = clock
        self._columns = columns
        self._announce_from = announce_from
        self._model_of = {id(spec): model.name for model in models for spec in model.files}
        self.total_bytes = sum(spec.size for model in models for spec in model.files)
        self.total_files = sum(len(model.files) for model in models)
        self.done_bytes = self.done_files = 0
        self.skipped_bytes = 0  # bytes of files checked by their stamps: no work, not counted in the speed
        self.joined_files = self.checked_files = self.stamped_files = 0
        self._started = clock()
        self._worked_since: float | None = None  # the first byte actually read
        self._current: PackagedFile | None = None
        self._file_started = 0.0
        self._joined = self._hashed = 0
        self._step = ""  # the current file's: "join" or "hash"
        self._drawn_at = -1.0
        self._line_open = False  # a terminal line waits for its newline
        self._began = False

    # --- the callback -------------------------------------------------------------------------

    def __call__(self, step: str, spec: PackagedFile, nbytes: int) -> None:
        now = self._clock()
        if step == "stamped":
            self.skipped_bytes += spec.size
            self.stamped_files += 1
            return
        if step == "done":
            self._file_done(spec, now)
            return
        if self._worked_since is None:
            self._worked_since = now
            self._begin()
        if spec is not self._current:
            self._current, self._file_started, self._joined, self._hashed, self._step = spec, now, 0, 0, step
            self._step_line(step, spec)
        elif step != self._step:  # joined, now checked; or it failed its check and is joined again
            self._step = step
            if step == "join":
                self._hashed = 0
            self._step_line(step, spec)
        if step == "join":
            self._joined += nbytes
        else:
            self._hashed += nbytes
        self._draw(now)

    def finish(self) -> None:
        """The summary line (and the end of the terminal's line)."""
        elapsed = self._clock() - self._started
        did = [f"{n} {what}" for n, what in ((self.joined_files, "joined"), (self.checked_files, "checked"),
                                             (self.stamped_files, "already checked")) if n]
        self._line(f"{PREFIX}: ready, {self.done_files} files, {size_text(self.done_bytes)} "
                   f"({', '.join(did) or 'nothing to do'}) in {duration_text(elapsed)}")

    def close(self) -> None:
        """End a half-drawn terminal line (after an error, before its message)."""
        if self._line_open:
            self._out.write("\n")
            self._out.flush()
            self._line_open = False

    # --- what it shows ------------------------------------------------------------------------

    @property
    def ready_bytes(self) -> float:
        """Bytes done, counting the current file's join and check as half each (a check alone: all of it)."""
        spec = self._current
        if spec is None or not spec.size:
            return self.done_bytes
        joining = self._joined or self._step == "join"
        fraction = (self._joined + self._hashed) / (2 * spec.size) if joining else self._hashed / spec.size
        return self.done_bytes + min(fraction, 1.0) * spec.size

    def speed(self, now: float) -> float | None:
        """Bytes per second of real work so far (None before there is any)."""
        if self._worked_since is None or now - self._worked_since <= 0:
            return None
        return max(0.0, self.ready_bytes - self.skipped_bytes) / (now - self._worked_since)

    def eta(self, now: float) -> float | None:
        """Seconds left at the speed so far (None before any work, or with nothing left)."""
        speed, left = self.speed(now), self.total_bytes - self.ready_bytes
        return None if not speed or left <= 0 else left / speed

    def status(self, now: float) -> str:
        """The terminal's line, most telling first (a narrow terminal cuts the end): bar and percent,
        bytes, time left, files, speed, the step under way."""
        ready = self.ready_bytes
        fraction = ready / self.total_bytes if self.total_bytes else 1.0
        filled = round(fraction * BAR)
        parts = [f"{PREFIX} [{'#' * filled}{'-' * (BAR - filled)}] {fraction:4.0%}",
                 f"{size_text(ready)} / {size_text(self.total_bytes)}"]
        eta, speed = self.eta(now), self.speed(now)
        if eta is not None:
            parts.append(f"ETA {duration_text(eta)}")
        parts.append(f"{self.done_files}/{self.total_files} files")
        if speed:
            parts.append(f"{size_text(speed)}/s")
        if self._current is not None:
            parts.append(f"{'joining' if self._step == 'join' else 'checking'} {self._current.name}")
        return "  ".join(parts)

    def _begin(self) -> None:
        """The first line, once there is work (a start with every file stamped prints the summary only)."""
        if not self._began:
            self._began = True
            self._line(f"{PREFIX}: {self.total_files} files, {size_text(self.total_bytes)} to check "
                       "(the first start joins them from their packages and checks each SHA-256)")

    def _step_line(self, step: str, spec: PackagedFile) -> None:
        if self._tty or spec.size < self._announce_from:
            return  # the terminal's line says it; a small file takes no time worth a line
        where = f"{self._model_of.get(id(spec), '?')}/{spec.name}"
        if step == "join":
            self._line(f"{PREFIX}: joining {where} ({size_text(spec.size)} from {len(spec.parts)} part(s))")
        else:
            self._line(f"{PREFIX}: checking the SHA-256 of {where} ({size_text(spec.size)})")

    def _file_done(self, spec: PackagedFile, now: float) -> None:
        worked = spec is self._current
        if worked:
            if self._joined:
                self.joined_files += 1
            else:
                self.checked_files += 1
        self._current = None
        self.done_bytes += spec.size
        self.done_files += 1
        if not worked:
            return
        if self._tty:
            self._draw(now, force=True)
            return
        eta = self.eta(now)
        self._line(f"{PREFIX}: {self._model_of.get(id(spec), '?')}/{spec.name} ready "
                   f"({'joined and checked' if self._joined else 'checked'} in {duration_text(now - self._file_started)}); "
                   f"{self.done_files} of {self.total_files} files, {size_text(self.done_bytes)} of "
                   f"{size_text(self.total_bytes)}" + (f", about {duration_text(eta)} left" if eta is not None else ""))

    def _draw(self, now: float, force: bool = False) -> None:
        if not self._tty or (not force and now - self._drawn_at < REDRAW_S):
            return
        self._drawn_at = now
        columns = self._columns or shutil.get_terminal_size((100, 24)).columns
        line = self.status(now)[:max(columns - 1, 20)]
        self._out.write(f"\r{line}\x1b[K")  # rewrite the line; clear what a longer one left
        self._out.flush()
        self._line_open = True

    def _line(self, text: str) -> None:
        if self._line_open:
            self._out.write("\r\x1b[K" if self._tty else "\n")
        self._out.write(text + "\n")
        self._out.flush()
        self._line_open = False


def main(argv: Sequence[str] | None = None) -> int:
    """Join and check the default models (Whisper base, the chosen Qwen, Kokoro), showing progress."""
    parser = argparse.ArgumentParser(prog="python -m gateway.engine.progress", description=main.__doc__)
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir(),
                        help="where the joined files go (default: %(default)s)")
    parser.add_argument("--llm", choices=sorted(LLMS), default="qwen2.5-1.5b")
    args = parser.parse_args(argv)
    models = [WHISPER_BASE, LLMS[args.llm]] + ([KOKORO_INT8] if installed(KOKORO_INT8) else [])
    progress = ModelProgress(models)
    try:
        for model in models:
            materialize(model, args.cache_dir, progress)
    except ModelError as exc:
        progress.close()
        print(f"{PREFIX}: {exc}", file=sys.stderr)
        return 1
    progress.finish()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
