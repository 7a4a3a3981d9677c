"""The bed's handle on its relay subprocess: start it, change its links at run time, stop it."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from .link import BurstLoss, LinkSettings

ROOT = Path(__file__).resolve().parents[2]


class RelayError(RuntimeError):
    pass


class RelayProcess:
    """Owns one ``python -m tests.netbed.relay``; requests are answered in order, one at a time."""

    def __init__(self, ports: dict[str, dict[str, Any]], seed: int) -> None:
        config = json.dumps({"ports": ports, "seed": seed})
        self._process = subprocess.Popen([sys.executable, "-m", "tests.netbed.relay", config], cwd=ROOT,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True, bufsize=1)
        self._lock = threading.Lock()
        ready = self._read_reply()
        if not ready.get("ready"):
            raise RelayError(f"the delay relay did not start: {ready}")

    @property
    def pid(self) -> int:
        return self._process.pid

    def _read_reply(self) -> dict[str, Any]:
        assert self._process.stdout is not None and self._process.stderr is not None
        line = self._process.stdout.readline()
        if not line:
            self._process.wait(5)
            raise RelayError(f"the delay relay exited ({self._process.returncode}): {self._process.stderr.read()}")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def request(self, **request: Any) -> dict[str, Any]:
        with self._lock:
            assert self._process.stdin is not None
            self._process.stdin.write(json.dumps(request) + "\n")
            self._process.stdin.flush()
            reply = self._read_reply()
        if not reply.get("ok"):
            raise RelayError(reply.get("error", str(reply)))
        return reply

    def set_link(self, settings: LinkSettings, src: str | None = None, dst: str | None = None) -> None:
        """Applies from the next packet on; packets already queued keep their times."""
        self.request(op="link", settings=settings.to_json(), src=src, dst=dst)

    def set_burst_loss(self, loss: BurstLoss, src: str | None = None, dst: str | None = None) -> None:
        """Gilbert–Elliott loss on these directions from the next packet on (a fresh good state)."""
        self.request(op="loss", settings=loss.to_json(), src=src, dst=dst)

    def route(self, address: str, port: str) -> None:
        self.request(op="route", address=address, port=port)

    def unroute(self, address: str) -> None:
        self.request(op="unroute", address=address)

    def stats(self) -> dict[str, Any]:
        return self.request(op="stats")

    def running(self) -> bool:
        return self._process.poll() is None

    def stop(self) -> None:
        """Closing stdin is the relay's signal to exit; escalate only if it does not."""
        if self._process.stdin is not None and not self._process.stdin.closed:
            try:
                self._process.stdin.close()
            except BrokenPipeError:
                pass
        try:
            self._process.wait(5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        for stream in (self._process.stdout, self._process.stderr):
            if stream is not None:
                stream.close()
