"""Bootstrap confidence interval of the pairwise win rate against the baseline."""

from __future__ import annotations

import numpy as np
import pytest

from judgelab.evaluation.report.bootstrap import bootstrap_win_rate
from judgelab.evaluation.report.evaluate import OUTCOME_CREDIT


def test_interval_covers_the_true_rate_and_brackets_the_estimate() -> None:
    rng = np.random.default_rng(11)
    credits = (rng.random(300) < 0.62).astype(float).tolist()
    rate = bootstrap_win_rate(credits, seed=0)
    assert rate.low <= 0.62 <= rate.high
    assert rate.low < rate.rate < rate.high
    assert 0.05 < rate.high - rate.low < 0.15  # about ±1.96·sqrt(p(1-p)/n) = ±0.055
    assert (rate.n, rate.resamples, rate.confidence) == (300, 1000, 0.95)


def test_same_seed_same_interval_other_seed_other_interval() -> None:
    credits = [1.0, 0.0, 0.5, 1.0, 1.0, 0.0, 1.0, 0.5, 0.0, 1.0] * 5
    first, again = bootstrap_win_rate(credits, seed=7), bootstrap_win_rate(credits, seed=7)
    assert (first.low, first.high) == (again.low, again.high)
    other = bootstrap_win_rate(credits, seed=8)
    assert (other.low, other.high) != (first.low, first.high)


def test_95_percent_intervals_cover_the_true_rate_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(5)
    true_rate, trials = 0.4, 200
    covered = sum(
        r.low <= true_rate <= r.high
        for r in (
            bootstrap_win_rate(
                (rng.random(120) < true_rate).astype(float).tolist(), seed=i, resamples=400
            )
            for i in range(trials)
        )
    )
    assert 0.88 * trials <= covered <= trials


def test_ties_count_half() -> None:
    credits = [OUTCOME_CREDIT[w] for w in ("win", "tie", "loss", "tie")]
    assert bootstrap_win_rate(credits).rate == pytest.approx(0.5)


def test_unanimous_outcomes_give_a_zero_width_interval() -> None:
    rate = bootstrap_win_rate([1.0] * 20)
    assert rate.rate == rate.low == rate.high == 1.0


@pytest.mark.parametrize(
    ("credits", "kwargs", "message"),
    [
        ([], {}, "no pairwise outcomes"),
        ([1.5], {}, r"\[0, 1\]"),
        ([1.0], {"resamples": 0}, "resamples"),
        ([1.0], {"confidence": 1.0}, "confidence"),
    ],
)
def test_bad_inputs_are_value_errors(
    credits: list[float], kwargs: dict[str, float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        bootstrap_win_rate(credits, **kwargs)  # type: ignore[arg-type]
