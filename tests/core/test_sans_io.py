"""The core keeps its promise: no I/O, no clock, no event loop (read from the source, not trusted)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "gateway" / "core"
# What would let core code block, sleep, read the time or touch the network.
FORBIDDEN = {"asyncio", "socket", "time", "threading", "selectors", "subprocess", "aiortc", "aioice", "aiohttp",
             "websockets", "av", "uvloop", "datetime"}
# Outside the core, only pure computation may be used (the 24 → 48 kHz filter of the playout).
ALLOWED_GATEWAY = {"gateway.media.resample"}


def _imports(path: Path) -> list[str]:
    package = "gateway.core"
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                names.append(".".join(base + ([node.module] if node.module else [])))
            else:
                names.append(node.module or "")
    return names


MODULES = sorted(CORE.glob("*.py"))


def test_the_core_has_modules() -> None:
    assert {"conversation.py", "playout.py", "policy.py", "history.py", "call_state.py"} <= {p.name for p in MODULES}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_core_module_does_no_io(path: Path) -> None:
    problems = []
    for name in _imports(path):
        top = name.split(".")[0]
        if top in FORBIDDEN:
            problems.append(f"imports {name}")
        elif top == "gateway" and not name.startswith("gateway.core") and name not in ALLOWED_GATEWAY:
            problems.append(f"imports {name} from outside the core")
    assert not problems, f"{path.name}: " + ", ".join(problems)


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import time\nfrom ..server import call\nfrom .events import Event\n")
    assert _imports(sample) == ["time", "gateway.server", "gateway.core.events"]
