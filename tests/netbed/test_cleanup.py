"""Nothing outlives a bed: not its namespaces, devices, relay or processes, even after a crash."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from .bed import NetBed
from .cleanup import cleanup_leftovers, namespaces
from .relay_process import ROOT
from .system import LOCK_DIR, require, sh

pytestmark = pytest.mark.netns


def alive(pid: int) -> bool:
    """Running, not merely an unreaped zombie (a container's init may never reap)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_until(condition: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def root_links() -> list[str]:
    return sorted(line.split(":")[1].strip() for line in sh("ip", "-o", "link").stdout.splitlines())


def test_closing_leaves_nothing_behind() -> None:
    require()
    links = root_links()
    with NetBed() as bed:
        bed.start(bed.client, ["sh", "-c", "sleep 300 & exec sleep 301"])  # a child and a grandchild
        bed.python(bed.server, "http.server", "--bind", bed.server.address, "8080").wait_for_line("Serving")
        assert wait_until(lambda: len(bed.pids()) == 4)  # relay, two sleeps, the web server
        pids = bed.pids()
        names = [host.namespace for host in bed.hosts.values()]
    assert not any(name in namespaces() for name in names)
    assert not any(alive(pid) for pid in pids)
    assert root_links() == links  # the test's own namespace never gained a device
    assert not (LOCK_DIR / f"{bed.tag}.lock").exists()


def test_a_crashed_run_is_cleaned_up_by_the_next() -> None:
    require()
    crash = ("import json, time; from tests.netbed import NetBed; bed = NetBed(); bed.open(); "
             "bed.start(bed.client, ['sleep', '300']); time.sleep(0.3); "
             "print(json.dumps({'namespaces': [h.namespace for h in bed.hosts.values()], 'pids': bed.pids(), "
             "'relay': bed._relay.pid}), flush=True); time.sleep(300)")
    victim = subprocess.Popen([sys.executable, "-c", crash], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert victim.stdout is not None
    left = json.loads(victim.stdout.readline())
    victim.kill()  # no close(), no finally: the way a run dies on SIGKILL or OOM
    victim.wait()
    victim.stdout.close()
    assert wait_until(lambda: not alive(left["relay"]))  # the relay notices its owner is gone
    assert set(left["namespaces"]) <= set(namespaces())  # the kernel state is still there...
    assert any(alive(pid) for pid in left["pids"] if pid != left["relay"])

    removed = cleanup_leftovers()  # ...until the next bed (which calls this on open) comes along
    assert set(left["namespaces"]) <= set(removed)
    assert not set(left["namespaces"]) & set(namespaces())
    assert wait_until(lambda: not any(alive(pid) for pid in left["pids"]))


def test_a_live_bed_is_never_taken_for_a_leftover() -> None:
    require()
    with NetBed() as bed:
        cleanup_leftovers()
        assert all(host.namespace in namespaces() for host in bed.hosts.values())
        assert os.path.exists(f"/var/run/netns/{bed.client.namespace}")
        assert bed.run(bed.client, ["true"]).returncode == 0
