"""Where the bed cannot run, its tests say why instead of failing."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from .relay_process import ROOT
from .system import require

pytestmark = pytest.mark.netns


def test_without_root_every_bed_test_skips_with_the_reason() -> None:
    require()  # only root can drop to another user
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    result = subprocess.run([*nobody, sys.executable, "-m", "pytest", "tests/netbed/test_bed.py", "-q", "-rs",
                             "-p", "no:cacheprovider"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONDONTWRITEBYTECODE": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed" not in result.stdout and "failed" not in result.stdout
    assert result.stdout.count("the network test bed needs root") >= 8, result.stdout
