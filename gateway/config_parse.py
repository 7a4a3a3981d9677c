"""What every settings area (``gateway/config_*.py``) is written with.

A :class:`Setting` row ties one environment variable and one CLI flag to one field of
:class:`gateway.config.Config`; the parsers turn the text into the field's type. The checks
raise :class:`ConfigError` with a message that starts with the setting's name, so an operator
reads which variable to fix.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A setting has a bad value; the message names the setting."""


@dataclass(frozen=True)
class Setting:
    """One env var + CLI flag → one field (``attr``), parsed by ``parse``."""

    flag: str
    env: str
    attr: str
    parse: Callable[[str], Any]
    help: str


def check(ok: bool, setting: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{setting} {message}")


def check_range(setting: str, value: float, low: float, high: float, unit: str = "") -> None:
    """``value`` within ``low``-``high`` inclusive (``unit``: e.g. " s", shown after the range)."""
    check(low <= value <= high, setting, f"must be {low}-{high}{unit}, not {value}")


def check_choice(setting: str, value: str, choices: Sequence[str]) -> None:
    """``value`` is one of ``choices`` (named in the message as "a, b or c")."""
    named = f"{', '.join(choices[:-1])} or {choices[-1]}"
    check(value in choices, setting, f"must be {named}, not {value!r}")


def check_secret(setting: str, value: str | None, length: int) -> None:
    """A secret that may be unset but is never short enough to guess."""
    check(value is None or len(value) >= length, setting, f"must be at least {length} characters long")


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true/false, not {text!r}")


def parse_csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def parse_path(text: str) -> Path | None:
    return Path(text).expanduser() if text else None
