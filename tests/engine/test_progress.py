"""The first start's model progress: what a person at a terminal, or reading a log, is told.

Fake model packages (a few MB of files in a temp dir, found through a patched ``_locate``) go
through the real ``materialize``; the reporter's clock advances with the bytes read and written,
at 1 MB/s, so speeds and times left are exact.
"""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path

import pytest

from gateway.engine import models
from gateway.engine.models import ModelError, PackagedFile, PackagedModel, materialize
from gateway.engine.progress import ModelProgress, duration_text, size_text

MB = 1_000_000


class Clock:
    """Time that passes only as work is done: ``speed`` bytes per second."""

    def __init__(self, speed: float = MB) -> None:
        self.now = 100.0
        self.speed = speed

    def __call__(self) -> float:
        return self.now


def paced(progress: ModelProgress, clock: Clock) -> models.Progress:
    """The reporter, with the clock moved on by each step's bytes first (stamps cost nothing)."""
    def hear(step: str, spec: PackagedFile, nbytes: int) -> None:
        if step in ("join", "hash"):
            clock.now += nbytes / clock.speed
        progress(step, spec, nbytes)
    return hear


@pytest.fixture
def packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[PackagedModel]:
    """Two models: "talk" (a 3 MB file in two parts, a 1 MB file) and "voice" (one 2 MB file)."""
    root = tmp_path / "site-packages"

    def packaged(name: str, sizes: list[int], seed: int) -> PackagedFile:
        parts, content = [], b""
        for index, size in enumerate(sizes):
            data = bytes([(seed + index + i) % 251 for i in range(251)]) * (size // 251) + b"x" * (size % 251)
            path = root / f"pkg-{name}-{index}" / "data.bin"
            path.parent.mkdir(parents=True)
            path.write_bytes(data)
            parts.append((f"pkg-{name}-{index}", "data.bin"))
            content += data
        return PackagedFile(name, tuple(parts), hashlib.sha256(content).hexdigest(), len(content))

    monkeypatch.setattr(models, "_locate", lambda dist, path: root / dist / path)
    return [PackagedModel("talk", (packaged("model.bin", [2 * MB, 1 * MB], 1), packaged("vocab.json", [MB], 2))),
            PackagedModel("voice", (packaged("voice.onnx", [2 * MB], 3),))]


def run(packages: list[PackagedModel], cache: Path, *, tty: bool = False, columns: int = 200,
        speed: float = MB, announce_from: int = 0) -> tuple[str, Clock]:
    out, clock = io.StringIO(), Clock(speed)
    progress = ModelProgress(packages, out, tty=tty, clock=clock, columns=columns, announce_from=announce_from)
    for model in packages:
        materialize(model, cache, paced(progress, clock))
    progress.finish()
    return out.getvalue(), clock


def test_first_start_in_a_log_one_line_per_step(packages: list[PackagedModel], tmp_path: Path) -> None:
    text, clock = run(packages, tmp_path / "cache")
    # Each file is copied from its parts, then hashed: 2 bytes of work per byte ready, at 1 MB/s.
    assert text.splitlines() == [
        "models: 3 files, 6 MB to check (the first start joins them from their packages and checks each SHA-256)",
        "models: joining talk/model.bin (3 MB from 2 part(s))",
        "models: checking the SHA-256 of talk/model.bin (3 MB)",
        "models: talk/model.bin ready (joined and checked in 6 s); 1 of 3 files, 3 MB of 6 MB, about 6 s left",
        "models: joining talk/vocab.json (1 MB from 1 part(s))",
        "models: checking the SHA-256 of talk/vocab.json (1 MB)",
        "models: talk/vocab.json ready (joined and checked in 2 s); 2 of 3 files, 4 MB of 6 MB, about 4 s left",
        "models: joining voice/voice.onnx (2 MB from 1 part(s))",
        "models: checking the SHA-256 of voice/voice.onnx (2 MB)",
        "models: voice/voice.onnx ready (joined and checked in 4 s); 3 of 3 files, 6 MB of 6 MB",
        "models: ready, 3 files, 6 MB (3 joined) in 12 s",
    ]
    assert clock.now == pytest.approx(112.0)
    assert "\r" not in text and "\x1b" not in text  # nothing a log viewer shows as garbage
    joined = tmp_path / "cache" / "talk" / "model.bin"
    assert hashlib.sha256(joined.read_bytes()).hexdigest() == packages[0].files[0].sha256


def test_small_files_get_one_line(packages: list[PackagedModel], tmp_path: Path) -> None:
    """A vocabulary file takes no time worth announcing: only the big files say when a step begins."""
    text, _ = run(packages, tmp_path / "cache", announce_from=2 * MB)
    assert [line.split(" (")[0] for line in text.splitlines()] == [
        "models: 3 files, 6 MB to check", "models: joining talk/model.bin", "models: checking the SHA-256 of talk/model.bin",
        "models: talk/model.bin ready", "models: talk/vocab.json ready", "models: joining voice/voice.onnx",
        "models: checking the SHA-256 of voice/voice.onnx", "models: voice/voice.onnx ready", "models: ready, 3 files, 6 MB"]


def test_later_starts_say_one_line(packages: list[PackagedModel], tmp_path: Path) -> None:
    run(packages, tmp_path / "cache")
    text, clock = run(packages, tmp_path / "cache")
    assert text.splitlines() == ["models: ready, 3 files, 6 MB (3 already checked) in under 1 s"]
    assert clock.now == 100.0  # nothing was read: the stamps said the files are unchanged


def test_a_changed_file_is_checked_then_joined_again(packages: list[PackagedModel], tmp_path: Path) -> None:
    run(packages, tmp_path / "cache")
    damaged = tmp_path / "cache" / "voice" / "voice.onnx"
    damaged.write_bytes(b"\0" * (2 * MB))  # same size, other bytes, a newer mtime: its stamp no longer fits
    text, _ = run(packages, tmp_path / "cache")
    assert text.splitlines() == [
        "models: 3 files, 6 MB to check (the first start joins them from their packages and checks each SHA-256)",
        "models: checking the SHA-256 of voice/voice.onnx (2 MB)",
        "models: joining voice/voice.onnx (2 MB from 1 part(s))",
        "models: checking the SHA-256 of voice/voice.onnx (2 MB)",
        "models: voice/voice.onnx ready (joined and checked in 6 s); 3 of 3 files, 6 MB of 6 MB",
        "models: ready, 3 files, 6 MB (1 joined, 2 already checked) in 6 s",
    ]
    assert hashlib.sha256(damaged.read_bytes()).hexdigest() == packages[1].files[0].sha256


def test_on_a_terminal_one_line_rewritten_in_place(packages: list[PackagedModel], tmp_path: Path) -> None:
    text, _ = run(packages, tmp_path / "cache", tty=True, columns=120)
    lines = text.split("\n")
    assert lines[0].startswith("models: 3 files, 6 MB to check")
    assert lines[-1] == ""  # the summary ends the line: the shell prompt starts on a fresh one
    assert lines[-2].endswith("\r\x1b[Kmodels: ready, 3 files, 6 MB (3 joined) in 12 s")
    assert len(lines) == 3  # everything between the first and the last line is one rewritten line
    frames = [f.removesuffix("\x1b[K") for f in lines[1].split("\r") if f and not f.startswith("\x1b[K")]
    assert all(len(frame) <= 119 for frame in frames)  # never wider than the terminal (no wrapping)
    assert 10 <= len(frames) <= 12 * 10 + 3 + 1, len(frames)  # at most 10 a second (and once per file)
    first, middle = frames[0], next(f for f in frames if "vocab.json" in f)
    assert first == "models [----------------]   0%  0 B / 6 MB  0/3 files  joining model.bin", first
    assert re.fullmatch(r"models \[#+-+\] +\d+%  [34] MB / 6 MB  ETA [4-6] s  1/3 files  500 kB/s  "
                        r"(joining|checking) vocab.json", middle), middle
    assert frames[-1].startswith("models [################] 100%  6 MB / 6 MB  3/3 files"), frames[-1]


def test_a_fast_disk_is_not_slowed_by_redrawing(packages: list[PackagedModel], tmp_path: Path) -> None:
    """At 100 MB/s the 12 MB of work takes 0.12 s: a redraw per 1 MiB block would be ~20 of them;
    the terminal gets a frame per file and at most one per 0.1 s."""
    text, clock = run(packages, tmp_path / "cache", tty=True, speed=100 * MB)
    frames = [f for f in text.split("\n")[1].split("\r") if f and not f.startswith("\x1b[K")]
    assert clock.now - 100 == pytest.approx(0.12)
    assert 3 <= len(frames) <= 3 + 2 + 1, frames


def test_a_damaged_package_ends_the_line_before_the_error(packages: list[PackagedModel], tmp_path: Path) -> None:
    source = models._locate(*packages[1].files[0].parts[0])
    source.write_bytes(b"\1" * source.stat().st_size)  # the pinned package's bytes, but not its content
    out, clock = io.StringIO(), Clock()
    progress = ModelProgress(packages, out, tty=True, clock=clock, columns=120)
    materialize(packages[0], tmp_path / "cache", paced(progress, clock))
    with pytest.raises(ModelError, match="does not match the recorded"):
        materialize(packages[1], tmp_path / "cache", paced(progress, clock))
    progress.close()
    assert out.getvalue().endswith("\n") and "checking voice.onnx" in out.getvalue().rsplit("\n", 2)[-2]
    assert not (tmp_path / "cache" / "voice" / "voice.onnx").exists()  # nothing half-made is left to be trusted


def test_sizes_and_durations_read_as_people_say_them() -> None:
    assert [size_text(n) for n in (512, 2_300, 145_217_532, 1_117_320_768, 1_359_000_000)] == \
        ["512 B", "2 kB", "145 MB", "1.12 GB", "1.36 GB"]
    assert [duration_text(s) for s in (0.4, 7.4, 59.6, 60, 192, 3600)] == \
        ["under 1 s", "7 s", "1 min", "1 min", "3 min 12 s", "60 min"]
