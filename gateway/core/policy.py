"""Which session fields a client may set: the operator's policy, checked without I/O."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

# The gateway converts audio itself, so these are never the client's to change.
ALWAYS_LOCKED = ("audio.input.format", "audio.output.format")


class PolicyError(ValueError):
    """A session change the policy refuses; ``param`` names the field."""

    def __init__(self, message: str, param: str, code: str = "session_field_locked") -> None:
        super().__init__(message)
        self.param = param
        self.code = code


def _paths(value: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    for key, child in value.items():
        path = f"{prefix}{key}"
        yield path
        if isinstance(child, Mapping):
            yield from _paths(child, path + ".")


@dataclass(frozen=True)
class SessionPolicy:
    locked: tuple[str, ...] = ("model",)

    @classmethod
    def from_fields(cls, fields: Iterable[str]) -> SessionPolicy:
        return cls(tuple(dict.fromkeys((*fields, *ALWAYS_LOCKED))))

    def check(self, session: Any) -> None:
        """Raise :class:`PolicyError` unless every field of ``session`` may be changed."""
        if not isinstance(session, Mapping):
            raise PolicyError("'session' must be an object.", "session", "invalid_value")
        if session.get("type", "realtime") != "realtime":
            raise PolicyError("Only 'realtime' sessions are supported.", "session.type", "invalid_value")
        for path in _paths(session):
            for locked in self.locked:
                if path == locked or path.startswith(locked + "."):
                    raise PolicyError(f"The gateway does not let clients change 'session.{path}'.",
                                      f"session.{path}")


def merge_session(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``update`` into a copy of ``base`` (objects merge, anything else replaces)."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_session(merged[key], value)
        else:
            merged[key] = value
    return merged
