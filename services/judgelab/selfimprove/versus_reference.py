"""Arena-Hard-style win rate against baseline answers: the data's reference answers.

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
    with_reference = [row for row in rows if row.reference and row.reference.strip()]
    samples = [
        Sample(f"reference:{row.id}", row.prompt, row.reference or "", row.reference)
        for row in with_reference
    ]
    reference_gold = {
        label.sample_id.removeprefix("reference:"): label.expected for label in gold.label(samples)
    }
    sides: dict[str, dict[str, float | None]] = {}
    for arm, record in records.items():
        for entry in record.get("answers") or ():
            prompt_id = str(entry["id"])
            sides.setdefault(START_ROW, {}).setdefault(prompt_id, _mean_gold(entry, "start"))
            sides.setdefault(arm, {})[prompt_id] = _mean_gold(entry, "end")
    result: dict[str, Any] = {
        "baseline": "reference answers (data.fields.reference)",
        "judge": "gold (pointwise expected scores compared)",
        "tie_margin": TIE_MARGIN,
        "prompts": len(rows),
        "without_reference": len(rows) - len(with_reference),
        "reference_gold_mean": mean(list(reference_gold.values())),
        "rows": {
            name: _versus(scores, reference_gold, resamples, seed) for name, scores in sides.items()
        },
    }
    return result


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
