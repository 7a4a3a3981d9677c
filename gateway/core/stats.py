"""Order statistics for the figures calls report (no numpy: lists are short)."""

from __future__ import annotations

from collections.abc import Iterable


def percentile(ordered: list[float], q: float) -> float:
    """The ``q`` quantile (0–1) of an already sorted, non-empty list, nearest rank below."""
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def percentiles(values: Iterable[float], *quantiles: float) -> list[float]:
    """``quantiles`` (0–1) of ``values``; an empty list when there are none."""
    ordered = sorted(values)
    return [percentile(ordered, q) for q in quantiles] if ordered else []
