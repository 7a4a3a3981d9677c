"""Which session fields a client may set: the operator's policy, checked without I/O.

A locked field keeps the operator's value on every event that could change it:

- ``session.update``: locked fields are taken out and the rest is applied, silently (the
  upstream's ``session.updated`` reports the effective session, as OpenAI does for fields a
  session cannot change). Official clients send their whole configuration on connect — the
  Agents SDK its default ``model`` and ``audio/pcm`` formats — and must not be refused for it.
  An ancestor of a locked field set to ``null`` is taken out the same way (it would wipe the
  locked value); set to any other non-object it is an error, as it is no valid session.
- ``response.create``: a per-response override of a locked field (``response.instructions``,
  ``response.tools``, ``response.audio.output.voice``…) is refused with an ``error``, unless it
  equals the session's value: it would change what that response does.
- ``conversation.item.create`` or ``response.input`` with a ``system`` message while
  ``instructions`` is locked: refused, it is instructions by another name.

Paths are dotted (``audio.output.voice``); a locked path locks everything inside it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# The gateway converts audio itself, so these are never the client's to change.
ALWAYS_LOCKED = ("audio.input.format", "audio.output.format")
_ABSENT = object()


class PolicyError(ValueError):
    """A change the policy refuses; ``param`` names the field."""

    def __init__(self, message: str, param: str, code: str = "session_field_locked") -> None:
        super().__init__(message)
        self.param = param
        self.code = code


def lookup(tree: Any, path: str) -> Any:
    """The value at dotted ``path`` in nested objects, or ``_ABSENT``."""
    for key in path.split("."):
        if not isinstance(tree, Mapping) or key not in tree:
            return _ABSENT
        tree = tree[key]
    return tree


@dataclass
class _Walk:
    """What one walk over an update found: the update without locked fields, and why."""

    changed: list[str]  # locked fields the update would change
    nulled: list[str]  # ancestors of locked fields set to null


@dataclass(frozen=True)
class SessionPolicy:
    locked: tuple[str, ...] = ("model",)

    @classmethod
    def from_fields(cls, fields: Iterable[str]) -> SessionPolicy:
        return cls(tuple(dict.fromkeys((*fields, *ALWAYS_LOCKED))))

    def with_locked(self, fields: Iterable[str]) -> SessionPolicy:
        """This policy with ``fields`` locked too (e.g. what the application's backend set)."""
        return SessionPolicy(tuple(dict.fromkeys((*self.locked, *fields))))

    def _is_locked(self, path: str) -> bool:
        return any(path == locked or path.startswith(locked + ".") for locked in self.locked)

    def _guards(self, path: str) -> bool:
        """``path`` holds a locked field further down."""
        return any(locked.startswith(path + ".") for locked in self.locked)

    def _walk(self, tree: Mapping[str, Any], prefix: str, current: Mapping[str, Any] | None,
              found: _Walk, where: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in tree.items():
            path = f"{prefix}{key}"
            if self._is_locked(path):
                if current is None or lookup(current, path) != value:
                    found.changed.append(path)
            elif not self._guards(path):
                out[key] = value
            elif value is None:
                found.nulled.append(path)
            elif not isinstance(value, Mapping):
                raise PolicyError(f"'{where}.{path}' must be an object.", f"{where}.{path}", "invalid_value")
            else:
                inner = self._walk(value, path + ".", current, found, where)
                if inner or not value:  # an object emptied by the walk says nothing any more
                    out[key] = inner
        return out

    def strip(self, session: Any, current: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], list[str]]:
        """``session`` (a ``session.update``'s) without the fields the client may not set, and
        those it tried to change (fields equal to ``current``'s are dropped without mention)."""
        if not isinstance(session, Mapping):
            raise PolicyError("'session' must be an object.", "session", "invalid_value")
        if session.get("type", "realtime") != "realtime":
            raise PolicyError("Only 'realtime' sessions are supported.", "session.type", "invalid_value")
        found = _Walk([], [])
        cleaned = {"type": "realtime", **self._walk(session, "", current, found, "session")}  # GA requires it
        return cleaned, [f"session.{path}" for path in (*found.changed, *found.nulled)]

    def check(self, session: Any, current: Mapping[str, Any] | None = None) -> None:
        """Raise :class:`PolicyError` unless every field of ``session`` may be set, for places
        that refuse rather than strip (a client secret's session); ``current``'s values pass."""
        _, touched = self.strip(session, current)
        if touched:
            raise PolicyError(f"The gateway does not let clients change '{touched[0]}'.", touched[0])

    def check_response(self, response: Any, current: Mapping[str, Any]) -> None:
        """Raise :class:`PolicyError` when a ``response.create`` overrides a locked field."""
        if response is None:
            return
        if not isinstance(response, Mapping):
            raise PolicyError("'response' must be an object.", "response", "invalid_value")
        found = _Walk([], [])
        self._walk(response, "", current, found, "response")  # a null ancestor overrides nothing
        if found.changed:
            path = found.changed[0]
            raise PolicyError(f"The gateway does not let clients override '{path}' for a response.",
                              f"response.{path}")
        items = response.get("input")
        if isinstance(items, list) and any(self._is_system_message(item) for item in items):
            raise PolicyError("The gateway does not let clients add system messages (instructions are locked).",
                              "response.input")

    def check_item(self, item: Any) -> None:
        """Raise :class:`PolicyError` when a ``conversation.item.create`` adds a system message
        while instructions are locked."""
        if self._is_system_message(item):
            raise PolicyError("The gateway does not let clients add system messages (instructions are locked).",
                              "item.role")

    def _is_system_message(self, item: Any) -> bool:
        return isinstance(item, Mapping) and item.get("role") == "system" and self._is_locked("instructions")


def merge_session(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``update`` into a copy of ``base`` (objects merge, anything else replaces)."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_session(merged[key], value)
        else:
            merged[key] = value
    return merged
