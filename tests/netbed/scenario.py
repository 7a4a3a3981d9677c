"""One call across the bed: the gateway (+ fake upstream) on the server host, a speaking client
on the client host. Returns the gateway's call summary, the audio the upstream received, and
what the client reported."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .bed import NetBed


def run_call(bed: NetBed, results: Path, wavs: list[Path], receive_path: str = "gateway",
             client_args: Sequence[str] = (), server_args: Sequence[str] = ()) -> tuple[dict[str, Any], Path, dict[str, Any]]:
    """``client_args``: more of :mod:`tests.netbed.call_client`'s flags (``--red``, ``--sender aiortc``…);
    ``server_args``: of :mod:`tests.netbed.serve_gateway`'s (``--stock-timers``, ``--no-red``, ``--no-nack``).
    The summary gains ``mic_nack``: the mic's NACK counts (nacked, resent, late, lost)."""
    server = bed.python(bed.server, "tests.netbed.serve_gateway", "--host", bed.server.address,
                        "--results", str(results), "--receive-path", receive_path, *server_args)
    url = json.loads(server.wait_for_line(r'^\{"url"', timeout=60).string)["url"]
    argv = ["--url", url, *client_args]
    for wav in wavs:
        argv += ["--wav", str(wav)]
    client = bed.python(bed.client, "tests.netbed.call_client", *argv)
    code = client.wait(timeout=180)
    assert code == 0, f"the call client failed ({code}):\n{client.stderr}"
    server.stop(timeout=30)
    (summary,) = json.loads((results / "calls.json").read_text())
    nack = json.loads((results / "mic_nack.json").read_text())
    summary["mic_nack"] = nack[0] if nack else {}
    return summary, results / "upstream-0.wav", client.json_lines()[-1]
