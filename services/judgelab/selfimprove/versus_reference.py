"""Arena-Hard-style win rate against baseline answers: the data's reference answers, or the
answers of an ``evaluation.baseline_answers`` file (:func:`win_rates_against`).

Arena-Hard compares a model's answers with a fixed baseline model's answers. Here the baseline
answers are the held-out prompts' references (on the arena-hard data they are a baseline
model's answers). The gold judge scores each reference as an answer; per prompt, the mean gold
score of an arm's final answers is compared with the reference's as the Evaluate unit compares
scores (win, tie within ``TIE_MARGIN``, loss), ties credited half, with a percentile-bootstrap
interval over prompts. The starting policy gets the same row, for comparison.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from judgelab.judging import Sample
from judgelab.judging.bootstrap import DEFAULT_RESAMPLES, bootstrap_win_rate
from judgelab.selfimprove.evaluate import CREDIT
from judgelab.selfimprove.prompts import PromptRow
from judgelab.units.evaluate_results import TIE_MARGIN, mean, outcome
from judgelab.units.gold import GoldLabeller

START_ROW = "starting policy"
REFERENCES = "reference answers (data.fields.reference)"


def reference_win_rates(
    rows: Sequence[PromptRow],
    records: Mapping[str, Mapping[str, Any]],
    gold: GoldLabeller,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """``records``: arm -> its ``gold_win_rate.json`` record (with ``answers``). Prompts without
    a reference are left out and counted."""
    answers = {row.id: row.reference for row in rows if row.reference and row.reference.strip()}
    result = win_rates_against(
        rows, answers, records, gold, REFERENCES, resamples=resamples, seed=seed
    )
    result["without_reference"] = len(rows) - len(answers)
    result["reference_gold_mean"] = result.pop("baseline_gold_mean")
    return result


def win_rates_against(
    rows: Sequence[PromptRow],
    answers: Mapping[str, str],
    records: Mapping[str, Mapping[str, Any]],
    gold: GoldLabeller,
    baseline: str,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """Each arm's (and the start's) gold win rate against ``answers`` (prompt id -> baseline
    answer, e.g. an ``evaluation.baseline_answers`` file's), which gold scores here."""
    samples = [
        Sample(f"baseline:{row.id}", row.prompt, answers[row.id], row.reference)
        for row in rows
        if row.id in answers
    ]
    baseline_gold = {
        label.sample_id.removeprefix("baseline:"): label.expected for label in gold.label(samples)
    }
    sides: dict[str, dict[str, float | None]] = {}
    for arm, record in records.items():
        for entry in record.get("answers") or ():
            prompt_id = str(entry["id"])
            sides.setdefault(START_ROW, {}).setdefault(prompt_id, _mean_gold(entry, "start"))
            sides.setdefault(arm, {})[prompt_id] = _mean_gold(entry, "end")
    return {
        "baseline": baseline,
        "judge": "gold (pointwise expected scores compared)",
        "tie_margin": TIE_MARGIN,
        "prompts": len(rows),
        "baseline_gold_mean": mean(list(baseline_gold.values())),
        "rows": {
            name: _versus(scores, baseline_gold, resamples, seed) for name, scores in sides.items()
        },
    }


def _mean_gold(entry: Mapping[str, Any], side: str) -> float | None:
    return mean([answer.get("gold") for answer in entry.get(side) or ()])


def _versus(
    scores: Mapping[str, float | None],
    reference_gold: Mapping[str, float | None],
    resamples: int,
    seed: int,
) -> dict[str, Any]:
    outcomes = [
        outcome(reference, score)
        for prompt_id, score in scores.items()
        if score is not None and (reference := reference_gold.get(prompt_id)) is not None
    ]
    row: dict[str, Any] = {
        "prompts": len(outcomes),
        "dropped": len(scores) - len(outcomes),
        "outcomes": {name: outcomes.count(name) for name in CREDIT},
        "win_rate": None,
    }
    if outcomes:
        credits = [CREDIT[o] for o in outcomes]
        row["win_rate"] = dataclasses.asdict(
            bootstrap_win_rate(credits, resamples=resamples, seed=seed)
        )
    return row
