"""``RUN/evaluate/self_improve.json``: what a ``dpo-self-judge`` study's Evaluate collected.

Shape (written by ``judgelab.units.evaluate_self_improve``; numbers may be null)::

    {"study": "dpo-self-judge", "baseline": "starting policy", "prompts": 8,
     "arms": {arm: {"kind": "self-judge-dpo" | "sft-on-references",
                    "outcomes": {"win": 3, "tie": 4, "loss": 1},
                    "gold_start_mean": 4.1, "gold_end_mean": 4.6,
                    "rounds": [{"round": 1, "pairs": 15, "ties": 1, "mean_score_margin": 0.3,
                                "comparisons": 192, "invalid_comparisons": 0,
                                "comparisons_per_second": 40.0, "dpo_steps": 4,
                                "dpo_loss_first": 0.69, "dpo_loss_last": 0.6,
                                "dpo_reward_margin_mean": 0.1,
                                "dpo_reward_accuracy_mean": 0.6}],      # DPO arms
                    "sft": {"examples": 16, "steps": 8, "loss_first": 2.1,
                            "loss_last": 1.7}}},                        # the SFT arm
     "versus_reference": null | {"reference_gold_mean": 5.0,
                                 "rows": {name: {"outcomes": {...}}}},
     "versus_baseline_answers": null | {"baseline": "baseline answers: FILE",
                                        "baseline_gold_mean": 5.0,
                                        "rows": {name: {"outcomes": {...}}}},
     "judge_agreement": {"pairs": 20, "with_reference": null | AGREEMENT,
                         "without_reference": null | AGREEMENT},
     "notes": ["..."]}

``AGREEMENT``: ``{"pairs", "valid", "position_consistency", "agreement": {"rate", "low",
"high", "n"} | null}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from judgelab.evaluation.report.errors import ReportInputError
from judgelab.evaluation.report.evaluate import OUTCOME_CREDIT
from judgelab.evaluation.report.jsonio import Fields, read_json

FILE = "self_improve.json"


@dataclass(frozen=True)
class SelfImproveFile:
    """The file's content, checked where the report reads it."""

    path: Path
    arms: dict[str, dict[str, Any]]
    versus_reference: dict[str, Any] | None
    judge_agreement: dict[str, Any]
    notes: tuple[str, ...]
    baseline: str
    versus_baseline_answers: dict[str, Any] | None = None

    @classmethod
    def load(cls, path: Path) -> SelfImproveFile:
        top = Fields.of(read_json(path), path)
        arms = top.child("arms")
        for arm in arms.data:
            arm_fields = arms.child(arm)
            outcomes = arm_fields.optional_child("outcomes")
            if outcomes is not None:
                for name in OUTCOME_CREDIT:
                    outcomes.integer(name)
            for index, entry in enumerate(arm_fields.items("rounds", required=False)):
                Fields.of(entry, path, where=f"arms.{arm}.rounds[{index}]")
        versus = top.optional_child("versus_reference")
        answers = top.optional_child("versus_baseline_answers")
        agreement = top.optional_child("judge_agreement")
        notes = top.items("notes", required=False)
        return cls(
            path,
            {arm: dict(arms.data[arm]) for arm in arms.data},
            None if versus is None else dict(versus.data),
            {} if agreement is None else dict(agreement.data),
            tuple(str(n) for n in notes),
            top.text("baseline", required=False) or "starting policy",
            None if answers is None else dict(answers.data),
        )


def credits_of(outcomes: Mapping[str, Any] | None) -> list[float]:
    """Win credits (1, ½, 0) from outcome counts; empty when there are none."""
    if not outcomes:
        return []
    return [OUTCOME_CREDIT[name] for name in OUTCOME_CREDIT for _ in range(int(outcomes[name]))]


def number(value: Any) -> float | None:
    """A finite number or None (the file may carry null for a gap)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if value == value and abs(value) != float("inf") else None


def load_self_improve(evaluate_dir: Path) -> SelfImproveFile | None:
    path = evaluate_dir / FILE
    if not path.is_file():
        return None
    try:
        return SelfImproveFile.load(path)
    except (KeyError, TypeError, ValueError) as error:
        if isinstance(error, ReportInputError):
            raise
        raise ReportInputError(path, f"unexpected shape: {error}") from None
