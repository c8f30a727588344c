"""Win rate with a percentile-bootstrap confidence interval over prompts (Arena-Hard-style;
also agreement rates): shared by the report, Evaluate and the self-improvement study."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_RESAMPLES = 1000


@dataclass(frozen=True)
class WinRate:
    """Mean win credit (win 1, tie ½, loss 0) over ``n`` prompts and its bootstrap interval."""

    rate: float
    low: float
    high: float
    n: int
    confidence: float
    resamples: int
    seed: int


def bootstrap_win_rate(
    credits: Sequence[float],
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    confidence: float = 0.95,
) -> WinRate:
    """Resample prompts with replacement ``resamples`` times; same seed, same interval."""
    if not credits:
        raise ValueError("no pairwise outcomes to resample")
    if resamples < 1 or not 0.0 < confidence < 1.0:
        raise ValueError(f"need resamples >= 1, 0 < confidence < 1: got {resamples}, {confidence}")
    values = np.asarray(credits, dtype=np.float64)
    if ((values < 0) | (values > 1)).any():
        raise ValueError("win credits must lie in [0, 1]")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(values), size=(resamples, len(values)))
    means = values[picks].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return WinRate(
        float(values.mean()), float(low), float(high), len(values), confidence, resamples, seed
    )
