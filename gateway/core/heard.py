"""What a listener heard of a reply that was cut: the one rule the gateway and the engine share."""

from __future__ import annotations

ELLIPSIS = "…"


def cut_at_heard(text: str, fraction: float) -> str:
    """The words of ``text`` heard when ``fraction`` of its audio had played (speech at an even
    pace), ending in an ellipsis where it was cut; empty when nothing was heard."""
    words = text.split()
    kept = words[:int(len(words) * max(0.0, min(1.0, fraction)))]
    return " ".join(kept) + (ELLIPSIS if kept and len(kept) < len(words) else "")
