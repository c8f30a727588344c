"""Agreement of a proxy judge with the gold judge: Krippendorff's alpha, correlations, accuracy.

Conventions shared by both metric sets:

* ``None`` marks a missing verdict. A ``None`` judge verdict is *invalid* (the judge's output could
  not be parsed); a ``None`` gold verdict removes the pair from every metric and is counted apart
  as ``gold_missing``. ``invalid_rate`` is the share of invalid judge verdicts among the pairs that
  have a gold verdict. NaN is rejected as input: ``None`` is the one spelling of "missing".
* A metric that is undefined on the data (too few pairs, no variation) is ``nan`` and its reason is
  recorded in ``undefined`` (metric name -> reason). Nothing raises and nothing warns for that.
* ``to_dict()`` gives a JSON-safe dict: ``nan`` becomes ``None``.

Alpha uses the maintained ``krippendorff`` package with the judge and gold as the two coders
(reliability data of shape ``(2, n)``, ``nan`` where a verdict is missing).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal, TypeVar

import krippendorff
import numpy as np
from scipy import stats

NAN = float("nan")

#: A metric value, or ``nan`` together with the reason it is undefined.
Metric = tuple[float, str | None]

#: Codes of the pairwise decisions fed to nominal alpha.
PREFER_B, PREFER_A, TIE = 0, 1, 2

J = TypeVar("J")
G = TypeVar("G")


@dataclass(frozen=True)
class PointwiseAgreement:
    """Agreement of pointwise (score) verdicts with gold on a ``scale_min..scale_max`` scale."""

    n: int
    n_valid: int
    gold_missing: int
    invalid_rate: float
    alpha_interval: float
    alpha_ordinal: float
    pearson: float
    spearman: float
    mean_abs_error: float
    mean_reasoning_tokens: float
    scale_min: int
    scale_max: int
    undefined: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _json_safe(self)


@dataclass(frozen=True)
class PairwiseAgreement:
    """Agreement of pairwise preferences (P(A preferred)) with gold's binary preference."""

    n: int
    n_valid: int
    gold_missing: int
    n_ties: int
    invalid_rate: float
    accuracy: float
    alpha_nominal: float
    position_consistency_rate: float
    undefined: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _json_safe(self)


def pointwise_agreement(
    judge: Sequence[float | None],
    gold: Sequence[float | None],
    *,
    scale_min: int,
    scale_max: int,
    reasoning_tokens: Sequence[int] | None = None,
) -> PointwiseAgreement:
    """Agreement of judge scores (possibly real-valued expected scores) with gold scores.

    The ordinal alpha needs values on the scale's integer points, so for it both judge and gold
    scores are rounded half up (2.5 -> 3); the interval alpha, correlations and MAE use the raw
    values. ``mean_reasoning_tokens`` averages over all ``n`` verdicts, valid or not (reasoning is
    spent either way); it is ``nan`` when no counts are given.
    """
    if scale_min >= scale_max:
        raise ValueError(f"scale_min ({scale_min}) must be below scale_max ({scale_max})")
    _check_lengths(judge=judge, gold=gold)
    _check_scores("judge", judge, scale_min, scale_max)
    _check_scores("gold", gold, scale_min, scale_max)
    if reasoning_tokens is not None:
        _check_lengths(judge=judge, reasoning_tokens=reasoning_tokens)
        _check_token_counts(reasoning_tokens)

    pairs = _both_present(judge, gold)
    judge_valid = [j for j, _ in pairs]
    gold_valid = [g for _, g in pairs]
    domain = list(range(scale_min, scale_max + 1))
    metrics: dict[str, Metric] = {
        "invalid_rate": _invalid_rate(judge, gold),
        "alpha_interval": _alpha(_reliability(judge, gold), "interval"),
        "alpha_ordinal": _alpha(
            _reliability(_rounded(judge), _rounded(gold)), "ordinal", value_domain=domain
        ),
        "pearson": _correlation(stats.pearsonr, judge_valid, gold_valid),
        "spearman": _correlation(stats.spearmanr, judge_valid, gold_valid),
        "mean_abs_error": _mean(abs(j - g) for j, g in pairs),
        "mean_reasoning_tokens": _mean_tokens(reasoning_tokens),
    }
    value = {name: metric[0] for name, metric in metrics.items()}
    return PointwiseAgreement(
        n=len(judge),
        n_valid=len(pairs),
        gold_missing=sum(g is None for g in gold),
        invalid_rate=value["invalid_rate"],
        alpha_interval=value["alpha_interval"],
        alpha_ordinal=value["alpha_ordinal"],
        pearson=value["pearson"],
        spearman=value["spearman"],
        mean_abs_error=value["mean_abs_error"],
        mean_reasoning_tokens=value["mean_reasoning_tokens"],
        scale_min=scale_min,
        scale_max=scale_max,
        undefined=_reasons(metrics),
    )


def pairwise_agreement(
    judge_pref: Sequence[float | None],
    gold_pref: Sequence[int | None],
    position_consistent: Sequence[bool | None] | None = None,
) -> PairwiseAgreement:
    """Agreement of P(A preferred) with gold's preference (1 = gold prefers A, 0 = B).

    The judge prefers A iff p > 0.5 and B iff p < 0.5. p == 0.5 is a tie: half credit in
    ``accuracy``, and its own category (neither A nor B) in the nominal alpha, where it therefore
    always disagrees with gold. ``position_consistency_rate`` is the share of ``True`` among the
    non-``None`` flags (all verdicts, whatever gold says); ``nan`` when there are none.
    """
    _check_lengths(judge_pref=judge_pref, gold_pref=gold_pref)
    _check_probabilities(judge_pref)
    _check_gold_preferences(gold_pref)
    if position_consistent is not None:
        _check_lengths(judge_pref=judge_pref, position_consistent=position_consistent)

    pairs = _both_present(judge_pref, gold_pref)
    decisions = [None if p is None else _decision(p) for p in judge_pref]
    metrics: dict[str, Metric] = {
        "invalid_rate": _invalid_rate(judge_pref, gold_pref),
        "accuracy": _mean(_credit(p, g) for p, g in pairs),
        "alpha_nominal": _alpha(_reliability(decisions, gold_pref), "nominal"),
        "position_consistency_rate": _consistency_rate(position_consistent),
    }
    value = {name: metric[0] for name, metric in metrics.items()}
    return PairwiseAgreement(
        n=len(judge_pref),
        n_valid=len(pairs),
        gold_missing=sum(g is None for g in gold_pref),
        n_ties=sum(p == 0.5 for p, _ in pairs),
        invalid_rate=value["invalid_rate"],
        accuracy=value["accuracy"],
        alpha_nominal=value["alpha_nominal"],
        position_consistency_rate=value["position_consistency_rate"],
        undefined=_reasons(metrics),
    )


# --- validation ------------------------------------------------------------------------------


def _check_lengths(**sequences: Sequence[object]) -> None:
    lengths = {name: len(values) for name, values in sequences.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{name} has {length}" for name, length in lengths.items())
        raise ValueError(f"length mismatch: {listed}")


def _check_scores(name: str, scores: Sequence[float | None], low: int, high: int) -> None:
    for index, score in enumerate(scores):
        if score is not None and not (math.isfinite(score) and low <= score <= high):
            raise ValueError(f"{name}[{index}] = {score!r} is outside the scale [{low}, {high}]")


def _check_probabilities(judge_pref: Sequence[float | None]) -> None:
    for index, p in enumerate(judge_pref):
        if p is not None and not (math.isfinite(p) and 0.0 <= p <= 1.0):
            raise ValueError(f"judge_pref[{index}] = {p!r} is not a probability in [0, 1]")


def _check_gold_preferences(gold_pref: Sequence[int | None]) -> None:
    for index, g in enumerate(gold_pref):
        if g is not None and g not in (0, 1):
            raise ValueError(f"gold_pref[{index}] = {g!r} is neither 0 (B) nor 1 (A)")


def _check_token_counts(counts: Sequence[int]) -> None:
    for index, count in enumerate(counts):
        if count < 0:
            raise ValueError(f"reasoning_tokens[{index}] = {count!r} is negative")


# --- metrics ---------------------------------------------------------------------------------


def _both_present(judge: Sequence[J | None], gold: Sequence[G | None]) -> list[tuple[J, G]]:
    return [(j, g) for j, g in zip(judge, gold, strict=True) if j is not None and g is not None]


def _invalid_rate(judge: Sequence[float | None], gold: Sequence[float | None]) -> Metric:
    judged = [j for j, g in zip(judge, gold, strict=True) if g is not None]
    if not judged:
        return NAN, "no pair has a gold verdict"
    return sum(j is None for j in judged) / len(judged), None


def _reliability(
    judge: Sequence[float | None], gold: Sequence[float | None]
) -> np.ndarray[Any, np.dtype[np.float64]]:
    return np.array(
        [[NAN if v is None else v for v in judge], [NAN if v is None else v for v in gold]],
        dtype=np.float64,
    )


def _alpha(
    data: np.ndarray[Any, np.dtype[np.float64]],
    level: Literal["interval", "ordinal", "nominal"],
    value_domain: list[int] | None = None,
) -> Metric:
    paired = data[:, ~np.isnan(data).any(axis=0)]
    if paired.shape[1] == 0:
        return NAN, "no valid pair"
    if np.unique(paired).size < 2:
        return NAN, "every valid verdict has the same value (expected disagreement is zero)"
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        value = float(
            krippendorff.alpha(
                reliability_data=data, value_domain=value_domain, level_of_measurement=level
            )
        )
    return (value, None) if math.isfinite(value) else (NAN, "krippendorff.alpha is undefined")


def _correlation(method: Any, judge: list[float], gold: list[float]) -> Metric:
    if len(judge) < 3:
        return NAN, f"fewer than 3 valid pairs ({len(judge)})"
    for name, values in (("judge", judge), ("gold", gold)):
        if min(values) == max(values):
            return NAN, f"{name} scores are constant (zero variance)"
    with warnings.catch_warnings():
        for category in (stats.ConstantInputWarning, stats.NearConstantInputWarning):
            warnings.simplefilter("ignore", category)
        value = float(method(judge, gold).statistic)
    return (value, None) if math.isfinite(value) else (NAN, "correlation is undefined")


def _mean(values: Iterable[float]) -> Metric:
    collected = list(values)
    if not collected:
        return NAN, "no valid pair"
    return math.fsum(collected) / len(collected), None


def _mean_tokens(counts: Sequence[int] | None) -> Metric:
    if counts is None:
        return NAN, "no reasoning token counts given"
    if not counts:
        return NAN, "no verdicts"
    return sum(counts) / len(counts), None


def _rounded(scores: Sequence[float | None]) -> list[float | None]:
    return [None if s is None else float(math.floor(s + 0.5)) for s in scores]


def _decision(p: float) -> int:
    if p > 0.5:
        return PREFER_A
    return PREFER_B if p < 0.5 else TIE


def _credit(p: float, gold: int) -> float:
    decision = _decision(p)
    if decision == TIE:
        return 0.5
    return 1.0 if decision == gold else 0.0


def _consistency_rate(flags: Sequence[bool | None] | None) -> Metric:
    if flags is None:
        return NAN, "no position-consistency flags given"
    known = [flag for flag in flags if flag is not None]
    if not known:
        return NAN, "no position-consistency flag is known"
    return sum(known) / len(known), None


# --- output ----------------------------------------------------------------------------------


def _reasons(metrics: dict[str, Metric]) -> dict[str, str]:
    return {name: reason for name, (_, reason) in metrics.items() if reason is not None}


def _json_safe(result: PointwiseAgreement | PairwiseAgreement) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(result):
        value = getattr(result, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        out[f.name] = dict(value) if isinstance(value, dict) else value
    return out
