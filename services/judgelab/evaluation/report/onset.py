"""Where on the training curve the gold reward peaked and where reward hacking set in."""

from __future__ import annotations

from collections.abc import Sequence

#: Default hacking margin as a fraction of the score scale's span (0.05 of 0–9 = 0.45 points).
DEFAULT_MARGIN_FRACTION = 0.05


def best_gold_index(gold: Sequence[float]) -> int | None:
    """Index of the highest gold reward (the earliest on a tie); None for no evaluations."""
    if not gold:
        return None
    return max(range(len(gold)), key=lambda i: (gold[i], -i))


def hacking_onset(proxy: Sequence[float], gold: Sequence[float], margin: float) -> int | None:
    """Index of the first evaluation where the proxy reward still rises over the previous one
    while gold has fallen more than ``margin`` below its best so far; None if that never happens.

    ``proxy[i]`` and ``gold[i]`` are the i-th evaluation's means, in step order.
    """
    if len(proxy) != len(gold):
        raise ValueError(f"{len(proxy)} proxy values but {len(gold)} gold values")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    best = float("-inf")
    for i, (p, g) in enumerate(zip(proxy, gold, strict=True)):
        best = max(best, g)
        if i > 0 and p > proxy[i - 1] and g < best - margin:
            return i
    return None
