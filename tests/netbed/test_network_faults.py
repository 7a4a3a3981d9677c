"""Real network faults (network namespaces): a 5 s outage and a change of address, both survived
by resuming the call on a new connection, with the same conversation."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.netbed import NetBed

pytestmark = pytest.mark.netns


def start(bed: NetBed, results: Path) -> tuple[object, object]:
    server = bed.python(bed.server, "tests.netbed.serve_gateway", "--host", bed.server.address,
                        "--results", str(results))
    url = json.loads(server.wait_for_line(r'^\{"url"', timeout=60).string)["url"]
    client = bed.python(bed.client, "tests.resume_client", "--url", url)
    client.wait_for_line('"answered"', timeout=60)
    return server, client


def milestones(client: object) -> dict[str, float]:
    return {line["event"]: line["at"] for line in client.json_lines()}  # type: ignore[attr-defined]


def test_a_five_second_outage_is_resumed(tmp_path: Path) -> None:
    with NetBed(seed=5) as bed:
        bed.set_delay(30, jitter_ms=5)
        server, client = start(bed, tmp_path)
        bed.cut(5.0)
        restored = time.monotonic()
        assert client.wait(60) == 0, client.stderr  # type: ignore[attr-defined]
        server.stop(timeout=30)  # type: ignore[attr-defined]
    times = milestones(client)
    assert set(times) == {"answered", "outage", "resumed", "answered_again"}
    resume_after_restore = times["resumed"] - restored
    assert resume_after_restore < 3.0
    (summary,) = json.loads((tmp_path / "calls.json").read_text())
    assert summary["turns"] == 2  # one conversation, one upstream session, both turns answered
    assert (tmp_path / "upstream-0.wav").exists() and not (tmp_path / "upstream-1.wav").exists()


def test_a_new_address_is_resumed(tmp_path: Path) -> None:
    with NetBed(seed=6) as bed:
        server, client = start(bed, tmp_path)
        bed.move(bed.client)  # Wi-Fi → 4G: the old address is gone, packets stop arriving
        assert client.wait(60) == 0, client.stderr  # type: ignore[attr-defined]
        server.stop(timeout=30)  # type: ignore[attr-defined]
    assert set(milestones(client)) == {"answered", "outage", "resumed", "answered_again"}
    (summary,) = json.loads((tmp_path / "calls.json").read_text())
    assert summary["turns"] == 2
