"""Gao et al. (2023) RL-form fit of gold reward against d = sqrt(KL(π‖π_init)).

``R(d) - R(0) = d·(α − β·log d)`` is linear in (α, β), so ordinary least squares finds the
exact optimum. R(0) is the gold reward measured at KL = 0 (the step-0 evaluation) when there is
one; otherwise it is fitted as a third coefficient.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
#: KL below this (nats) counts as the initial policy.
ZERO_KL = 1e-12


@dataclass(frozen=True)
class GaoFit:
    alpha: float
    beta: float
    intercept: float
    intercept_fitted: bool
    r2: float | None  # None when gold is constant (R² undefined)
    n_points: int


@dataclass(frozen=True)
class FitUnavailable:
    reason: str
    n_points: int


def gao_curve(d: FloatArray, alpha: float, beta: float) -> FloatArray:
    """``d·(α − β·log d)``, taking d·log d = 0 at d = 0."""
    d_log_d = np.zeros_like(d)
    positive = d > 0
    d_log_d[positive] = d[positive] * np.log(d[positive])
    return np.asarray(alpha * d - beta * d_log_d, dtype=np.float64)


def fit_gao(kl: Sequence[float], gold: Sequence[float]) -> GaoFit | FitUnavailable:
    """Least-squares fit of ``gold = R0 + d(α − β log d)``, ``d = sqrt(kl)``."""
    if len(kl) != len(gold):
        raise ValueError(f"{len(kl)} KL values but {len(gold)} gold values")
    kl_arr = np.clip(np.asarray(kl, dtype=np.float64), 0.0, None)
    gold_arr = np.asarray(gold, dtype=np.float64)
    d = np.sqrt(kl_arr)
    at_zero = kl_arr <= ZERO_KL
    fit_intercept = not at_zero.any()
    columns = [d, -_d_log_d(d)] + ([np.ones_like(d)] if fit_intercept else [])
    needed = len(columns) + 1  # one more KL > 0 point than coefficients, or R² says nothing
    distinct = len(np.unique(d[~at_zero]))
    if distinct < needed:
        what = " (no evaluation at KL = 0, so R(0) is fitted too)" if fit_intercept else ""
        return FitUnavailable(
            f"not enough points: {distinct} distinct KL > 0 value(s), the fit needs {needed}{what}",
            len(d),
        )
    intercept = 0.0 if fit_intercept else float(gold_arr[at_zero].mean())
    rows = ~at_zero
    design = np.stack(columns, axis=1)
    coefficients, *_ = np.linalg.lstsq(design[rows], gold_arr[rows] - intercept, rcond=None)
    alpha, beta = float(coefficients[0]), float(coefficients[1])
    if fit_intercept:
        intercept = float(coefficients[2])
    predicted = intercept + gao_curve(d, alpha, beta)
    return GaoFit(alpha, beta, intercept, fit_intercept, _r2(gold_arr, predicted), len(d))


def _d_log_d(d: FloatArray) -> FloatArray:
    return -gao_curve(d, 0.0, 1.0)


def _r2(observed: FloatArray, predicted: FloatArray) -> float | None:
    total = float(((observed - observed.mean()) ** 2).sum())
    if total <= 0.0:
        return None
    return 1.0 - float(((observed - predicted) ** 2).sum()) / total
