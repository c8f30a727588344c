"""Agreement metrics of a proxy judge against gold (judgelab.judging.agreement)."""

from __future__ import annotations

import json
import math
import warnings

import krippendorff
import numpy as np
import pytest
from scipy import stats

from judgelab.judging.agreement import (
    PairwiseAgreement,
    PointwiseAgreement,
    pairwise_agreement,
    pointwise_agreement,
)

nan = float("nan")


def pointwise(
    judge: list[float | None],
    gold: list[float | None],
    reasoning_tokens: list[int] | None = None,
) -> PointwiseAgreement:
    """On the 1..5 scale."""
    return pointwise_agreement(
        judge, gold, scale_min=1, scale_max=5, reasoning_tokens=reasoning_tokens
    )


# --- pointwise -------------------------------------------------------------------------------


def test_perfect_agreement_gives_alpha_and_correlation_one() -> None:
    scores: list[float | None] = [1, 2, 3, 4, 5, 3]
    result = pointwise(scores, scores)
    assert result.alpha_interval == pytest.approx(1.0)
    assert result.alpha_ordinal == pytest.approx(1.0)
    assert result.pearson == pytest.approx(1.0)
    assert result.spearman == pytest.approx(1.0)
    assert result.mean_abs_error == 0.0
    assert (result.n, result.n_valid, result.invalid_rate) == (6, 6, 0.0)


def test_small_example_matches_krippendorff_and_scipy_directly() -> None:
    judge: list[float | None] = [1.2, 2.0, 3.7, 4.0, None, 2.6, 4.4]
    gold: list[float | None] = [1, 3, 4, 4, 2, None, 5]
    result = pointwise(judge, gold)

    interval = krippendorff.alpha(
        reliability_data=[[1.2, 2, 3.7, 4, nan, 2.6, 4.4], [1, 3, 4, 4, 2, nan, 5]],
        level_of_measurement="interval",
    )
    ordinal = krippendorff.alpha(
        reliability_data=[[1, 2, 4, 4, nan, 3, 4], [1, 3, 4, 4, 2, nan, 5]],
        value_domain=[1, 2, 3, 4, 5],
        level_of_measurement="ordinal",
    )
    valid_judge, valid_gold = [1.2, 2.0, 3.7, 4.0, 4.4], [1, 3, 4, 4, 5]
    assert result.alpha_interval == pytest.approx(interval)
    assert result.alpha_ordinal == pytest.approx(ordinal)
    assert result.pearson == pytest.approx(stats.pearsonr(valid_judge, valid_gold).statistic)
    assert result.spearman == pytest.approx(stats.spearmanr(valid_judge, valid_gold).statistic)
    assert result.mean_abs_error == pytest.approx((0.2 + 1.0 + 0.3 + 0.0 + 0.6) / 5)
    assert (result.n, result.n_valid, result.gold_missing) == (7, 5, 1)
    assert result.invalid_rate == pytest.approx(1 / 6)
    assert 0.0 < result.alpha_interval < 1.0
    assert result.undefined == {"mean_reasoning_tokens": "no reasoning token counts given"}


def test_ordinal_alpha_rounds_expected_scores_half_up() -> None:
    judge: list[float | None] = [2.5, 1.4, 4.5, 3.2]
    gold: list[float | None] = [3, 1, 5, 3]
    result = pointwise(judge, gold)
    # Rounded half up, the judge equals gold exactly; the raw values do not.
    assert result.alpha_ordinal == pytest.approx(1.0)
    assert result.alpha_interval < 1.0


def test_constant_judge_gives_nan_correlations_with_reason_and_no_warning() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = pointwise([3, 3, 3, 3], [1, 2, 3, 4])
    assert caught == []
    assert math.isnan(result.pearson) and math.isnan(result.spearman)
    assert "constant" in result.undefined["pearson"]
    assert "constant" in result.undefined["spearman"]
    assert math.isfinite(result.alpha_interval)


def test_no_variation_anywhere_gives_nan_alpha_without_warning(
    recwarn: pytest.WarningsRecorder,
) -> None:
    warnings.simplefilter("always")
    result = pointwise([4, 4, 4], [4, 4, 4])
    assert len(recwarn) == 0
    assert math.isnan(result.alpha_interval) and math.isnan(result.alpha_ordinal)
    assert "same value" in result.undefined["alpha_ordinal"]
    assert result.mean_abs_error == 0.0


def test_fewer_than_three_valid_pairs_gives_nan_correlation() -> None:
    result = pointwise([1, 5, None], [2, 4, 3])
    assert math.isnan(result.pearson)
    assert "fewer than 3" in result.undefined["pearson"]
    assert result.n_valid == 2


def test_missing_values_and_invalid_rate() -> None:
    judge: list[float | None] = [None, 2, None, 4, 5]
    gold: list[float | None] = [1, 2, 3, None, None]
    result = pointwise(judge, gold)
    # Gold-missing pairs leave the denominator: 2 invalid among the 3 with gold.
    assert result.invalid_rate == pytest.approx(2 / 3)
    assert (result.n, result.n_valid, result.gold_missing) == (5, 1, 2)


def test_all_judge_verdicts_invalid_does_not_raise() -> None:
    result = pointwise([None, None], [1, 2])
    assert result.invalid_rate == 1.0
    assert result.n_valid == 0
    for name in ("alpha_interval", "alpha_ordinal", "pearson", "mean_abs_error"):
        assert math.isnan(getattr(result, name))
        assert name in result.undefined


def test_mean_reasoning_tokens_over_all_verdicts() -> None:
    result = pointwise([1, None, 3], [1, 2, 3], reasoning_tokens=[10, 40, 25])
    assert result.mean_reasoning_tokens == pytest.approx(25.0)
    assert "mean_reasoning_tokens" not in result.undefined


def test_length_mismatch_names_both_lengths() -> None:
    with pytest.raises(ValueError, match=r"judge has 3.*gold has 2"):
        pointwise([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match=r"judge has 2.*reasoning_tokens has 1"):
        pointwise([1, 2], [1, 2], reasoning_tokens=[5])


@pytest.mark.parametrize(
    ("judge", "gold", "where"),
    [
        ([1, 6], [1, 2], r"judge\[1\]"),
        ([1, 2], [0, 2], r"gold\[0\]"),
        ([1, nan], [1, 2], r"judge\[1\]"),
    ],
)
def test_value_outside_scale_names_index(
    judge: list[float | None], gold: list[float | None], where: str
) -> None:
    with pytest.raises(ValueError, match=where):
        pointwise(judge, gold)


def test_empty_scale_is_rejected() -> None:
    with pytest.raises(ValueError, match="scale_min"):
        pointwise_agreement([1], [1], scale_min=3, scale_max=3)


# --- pairwise --------------------------------------------------------------------------------


def test_pairwise_accuracy_gives_ties_half_credit() -> None:
    judge: list[float | None] = [0.9, 0.2, 0.5, 0.7, None]
    gold: list[int | None] = [1, 0, 1, 0, 1]
    result = pairwise_agreement(judge, gold)
    assert result.accuracy == pytest.approx((1 + 1 + 0.5 + 0) / 4)
    assert (result.n, result.n_valid, result.n_ties) == (5, 4, 1)
    assert result.invalid_rate == pytest.approx(1 / 5)
    # Decisions: A=1, B=0, tie=2 (its own category).
    expected = krippendorff.alpha(
        reliability_data=[[1.0, 0.0, 2.0, 1.0, nan], [1.0, 0.0, 1.0, 0.0, 1.0]],
        level_of_measurement="nominal",
    )
    assert result.alpha_nominal == pytest.approx(expected)


def test_pairwise_perfect_agreement() -> None:
    result = pairwise_agreement([0.8, 0.1, 0.51, 0.49], [1, 0, 1, 0])
    assert result.accuracy == 1.0
    assert result.alpha_nominal == pytest.approx(1.0)
    assert result.n_ties == 0


def test_pairwise_gold_missing_leaves_the_denominators() -> None:
    result = pairwise_agreement([0.9, None, 0.1], [1, None, None])
    assert (result.n_valid, result.gold_missing, result.invalid_rate) == (1, 2, 0.0)
    assert result.accuracy == 1.0


def test_position_consistency_rate_ignores_unknown_flags() -> None:
    result = pairwise_agreement([0.9, 0.2, 0.6, 0.4], [1, 0, 1, 1], [True, False, None, True])
    assert result.position_consistency_rate == pytest.approx(2 / 3)
    unflagged = pairwise_agreement([0.9], [1])
    assert math.isnan(unflagged.position_consistency_rate)
    assert "position_consistency_rate" in unflagged.undefined


@pytest.mark.parametrize(
    ("judge", "gold", "consistent", "message"),
    [
        ([0.5, 1.5], [1, 0], None, r"judge_pref\[1\]"),
        ([0.5, nan], [1, 0], None, r"judge_pref\[1\]"),
        ([0.5, 0.5], [1, 2], None, r"gold_pref\[1\]"),
        ([0.5, 0.5], [1], None, r"judge_pref has 2.*gold_pref has 1"),
        ([0.5], [1], [True, False], r"judge_pref has 1.*position_consistent has 2"),
    ],
)
def test_pairwise_rejects_bad_input(
    judge: list[float | None],
    gold: list[int | None],
    consistent: list[bool | None] | None,
    message: str,
) -> None:
    with pytest.raises(ValueError, match=message):
        pairwise_agreement(judge, gold, consistent)


# --- JSON ------------------------------------------------------------------------------------


def test_to_dict_is_strict_json_with_nan_as_none() -> None:
    pointwise_result = pointwise([3, 3], [3, 3])
    pairwise_result = pairwise_agreement([None], [1])
    for result in (pointwise_result, pairwise_result):
        as_dict = result.to_dict()
        decoded = json.loads(json.dumps(as_dict, allow_nan=False))
        assert decoded == as_dict
        assert as_dict["undefined"] == result.undefined
    assert pointwise_result.to_dict()["pearson"] is None
    assert pointwise_result.to_dict()["mean_abs_error"] == 0.0
    assert pairwise_result.to_dict()["accuracy"] is None


def test_results_are_frozen() -> None:
    result = pairwise_agreement([0.9], [1])
    assert isinstance(result, PairwiseAgreement)
    with pytest.raises(AttributeError):
        result.accuracy = 0.0  # type: ignore[misc]
    assert np.isfinite(result.accuracy)
