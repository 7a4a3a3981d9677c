"""A program running inside a bed host, with its output collected as it comes.

Reader threads drain stdout and stderr continuously, so a chatty process never blocks on a full
pipe, and a test can wait for a line ("listening on …") while the process keeps running.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any


class ProcessError(RuntimeError):
    pass


class _Collector:
    def __init__(self, stream: IO[str], changed: threading.Condition) -> None:
        self.lines: list[str] = []
        self._changed = changed
        self.thread = threading.Thread(target=self._drain, args=(stream,), daemon=True)
        self.thread.start()

    def _drain(self, stream: IO[str]) -> None:
        with stream:
            for line in stream:
                with self._changed:
                    self.lines.append(line.rstrip("\n"))
                    self._changed.notify_all()


class NetProcess:
    """Started by :meth:`NetBed.start`; the bed stops it on close if the test has not."""

    def __init__(self, argv: list[str], *, name: str, cwd: Path, env: Mapping[str, str], stdin: bool) -> None:
        self.name = name
        self.argv = argv
        self._popen = subprocess.Popen(argv, cwd=cwd, env=dict(env), text=True, bufsize=1,
                                       stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._changed = threading.Condition()
        assert self._popen.stdout is not None and self._popen.stderr is not None
        self._stdout = _Collector(self._popen.stdout, self._changed)
        self._stderr = _Collector(self._popen.stderr, self._changed)

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        return self._popen.poll()

    @property
    def stdout(self) -> str:
        with self._changed:
            return "\n".join(self._stdout.lines)

    @property
    def stderr(self) -> str:
        with self._changed:
            return "\n".join(self._stderr.lines)

    def json_lines(self) -> list[Any]:
        """Every stdout line that parses as JSON: the usual way bed programs report results."""
        found = []
        with self._changed:
            lines = list(self._stdout.lines)
        for line in lines:
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
        return found

    def wait_for_line(self, pattern: str, timeout: float = 20.0, *, stream: str = "stdout") -> re.Match[str]:
        """The first line (seen so far or to come) matching ``pattern``; fails early if the process exits."""
        regex = re.compile(pattern)
        collector = self._stdout if stream == "stdout" else self._stderr
        deadline = time.monotonic() + timeout
        checked = 0
        with self._changed:
            while True:
                for line in collector.lines[checked:]:
                    match = regex.search(line)
                    if match:
                        return match
                checked = len(collector.lines)
                if self._popen.poll() is not None and not self._stdout.thread.is_alive() \
                        and not self._stderr.thread.is_alive():
                    raise ProcessError(f"{self.name} exited ({self._popen.returncode}) without printing "
                                       f"/{pattern}/; stderr:\n{self._tail()}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ProcessError(f"{self.name} printed no /{pattern}/ within {timeout} s; stderr:\n{self._tail()}")
                self._changed.wait(min(remaining, 0.2))

    async def wait_for_line_async(self, pattern: str, timeout: float = 20.0, *, stream: str = "stdout") -> re.Match[str]:
        return await asyncio.to_thread(self.wait_for_line, pattern, timeout, stream=stream)

    def _tail(self, lines: int = 30) -> str:
        return "\n".join(self._stderr.lines[-lines:])

    def write(self, text: str) -> None:
        """Send ``text`` to the process's stdin (started with ``stdin=True``)."""
        if self._popen.stdin is None:
            raise ProcessError(f"{self.name} was started without stdin")
        self._popen.stdin.write(text)
        self._popen.stdin.flush()

    def send_signal(self, sig: int) -> None:
        if self._popen.poll() is None:
            self._popen.send_signal(sig)

    def wait(self, timeout: float | None = None) -> int:
        """Wait for exit and for the output to be collected (briefly: a child it left behind may
        hold the pipes open until the bed removes its namespace)."""
        code = self._popen.wait(timeout)
        deadline = time.monotonic() + 1.0
        for collector in (self._stdout, self._stderr):
            collector.thread.join(max(0.0, deadline - time.monotonic()))
        return code

    async def wait_async(self, timeout: float | None = None) -> int:
        return await asyncio.to_thread(self.wait, timeout)

    def stop(self, timeout: float = 5.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code. Idempotent."""
        if self._popen.stdin is not None and not self._popen.stdin.closed:
            try:
                self._popen.stdin.close()
            except BrokenPipeError:
                pass
        self.send_signal(signal.SIGTERM)
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            self._popen.kill()
            return self.wait()

    def __repr__(self) -> str:
        return f"<NetProcess {self.name} pid={self.pid} returncode={self.returncode}>"
