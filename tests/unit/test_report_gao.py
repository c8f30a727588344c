"""The Gao et al. RL-form fit gold(d) = R0 + d(α − β log d) of the study report."""

from __future__ import annotations

import numpy as np
import pytest

from judgelab.evaluation.report.gao import FitUnavailable, GaoFit, fit_gao, gao_curve


def _synthetic(alpha: float, beta: float, r0: float, d: np.ndarray) -> list[float]:
    return (r0 + gao_curve(d, alpha, beta)).tolist()


@pytest.mark.parametrize(("alpha", "beta"), [(1.2, 1.5), (0.9, 0.3), (2.0, -0.4)])
def test_fit_recovers_known_alpha_beta_with_a_step_zero_point(alpha: float, beta: float) -> None:
    d = np.linspace(0.0, 3.0, 16)
    fit = fit_gao((d**2).tolist(), _synthetic(alpha, beta, 4.0, d))
    assert isinstance(fit, GaoFit)
    assert fit.alpha == pytest.approx(alpha, abs=1e-3)
    assert fit.beta == pytest.approx(beta, abs=1e-3)
    assert fit.intercept == pytest.approx(4.0, abs=1e-9) and not fit.intercept_fitted
    assert fit.r2 == pytest.approx(1.0, abs=1e-9)


def test_fit_recovers_the_intercept_too_when_step_zero_was_not_evaluated() -> None:
    d = np.linspace(0.2, 3.0, 12)
    fit = fit_gao((d**2).tolist(), _synthetic(1.1, 0.8, 3.5, d))
    assert isinstance(fit, GaoFit) and fit.intercept_fitted
    assert (fit.alpha, fit.beta, fit.intercept) == pytest.approx((1.1, 0.8, 3.5), abs=1e-3)


def test_noisy_fit_stays_close_and_reports_r2_below_one() -> None:
    rng = np.random.default_rng(3)
    d = np.linspace(0.0, 2.5, 40)
    gold = np.array(_synthetic(1.2, 1.5, 4.0, d)) + rng.normal(0, 0.05, d.size)
    gold[0] = 4.0
    fit = fit_gao((d**2).tolist(), gold.tolist())
    assert isinstance(fit, GaoFit)
    assert fit.alpha == pytest.approx(1.2, abs=0.1) and fit.beta == pytest.approx(1.5, abs=0.1)
    assert fit.r2 is not None and 0.9 < fit.r2 < 1.0


@pytest.mark.parametrize(
    "kl",
    [[], [0.0], [0.0, 0.1, 0.4], [0.1, 0.2, 0.3], [0.0, 0.5, 0.5, 0.5, 0.5]],
    ids=["none", "only-step-0", "two-above-zero", "three-no-step-0", "one-distinct-kl"],
)
def test_too_few_points_say_not_enough_points_instead_of_crashing(kl: list[float]) -> None:
    fit = fit_gao(kl, [4.0 + k for k in kl])
    assert isinstance(fit, FitUnavailable)
    assert fit.reason.startswith("not enough points") and fit.n_points == len(kl)


def test_constant_gold_fits_flat_with_undefined_r2() -> None:
    fit = fit_gao([0.0, 0.25, 1.0, 2.25], [5.0, 5.0, 5.0, 5.0])
    assert isinstance(fit, GaoFit)
    assert fit.r2 is None and fit.alpha == pytest.approx(0.0, abs=1e-12)


def test_mismatched_lengths_are_a_value_error() -> None:
    with pytest.raises(ValueError, match="2 KL values but 1 gold"):
        fit_gao([0.0, 1.0], [1.0])
