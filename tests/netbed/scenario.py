"""One call across the bed: the gateway (+ fake upstream) on the server host, a speaking client
on the client host. Returns the gateway's call summary, the audio the upstream received, and
what the client reported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .bed import NetBed


def run_call(bed: NetBed, results: Path, wavs: list[Path], receive_path: str = "gateway") -> tuple[dict, Path, dict]:
    server = bed.spawn(bed.server, [sys.executable, "-m", "tests.netbed.serve_gateway", "--host", bed.server.address,
                                    "--results", str(results), "--receive-path", receive_path],
                       stdout=subprocess.PIPE)
    assert server.stdout is not None
    url = json.loads(server.stdout.readline())["url"]
    argv = [sys.executable, "-m", "tests.netbed.call_client", "--url", url]
    for wav in wavs:
        argv += ["--wav", str(wav)]
    client = bed.spawn(bed.client, argv, stdout=subprocess.PIPE)
    out, _ = client.communicate(timeout=180)
    assert client.returncode == 0, out
    server.terminate()
    server.wait(30)
    (summary,) = json.loads((results / "calls.json").read_text())
    return summary, results / "upstream-0.wav", json.loads(out.strip().splitlines()[-1])
