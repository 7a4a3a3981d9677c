"""JSON from an HTTP body, parsed with a bound on nesting.

``json.loads`` recurses in C: a 64 KiB body of ``[[[[…`` raises ``RecursionError`` (not
``ValueError``), and a value nested just below the interpreter's limit strains every recursive
walk after it (the session policy, deep copies, the upstream's own parser). No Realtime session
needs more than a handful of levels, so a body deeper than :data:`~.events.MAX_DEPTH` — the
bound data-channel events have too — is refused as a 400 before any other code sees it.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import BadRequest
from .events import MAX_DEPTH, depth


def parse_json(data: bytes | str, *, what: str = "The body", param: str | None = None) -> Any:
    """The decoded value, or :class:`BadRequest` (``invalid_json``) saying what is wrong."""
    too_deep = BadRequest(f"{what} is nested more than {MAX_DEPTH} levels deep.", code="invalid_json", param=param)
    try:
        value = json.loads(data)
    except RecursionError:
        raise too_deep from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise BadRequest(f"{what} is not valid JSON: {exc}", code="invalid_json", param=param) from None
    if depth(value) > MAX_DEPTH:
        raise too_deep
    return value
