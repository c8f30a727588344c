"""What the gold judge measures during and after policy training."""

from __future__ import annotations

from pydantic import Field, model_validator

from judgelab.spec.common import Issue, raise_issues
from judgelab.spec.model import StrictModel


class EvaluationSpec(StrictModel):
    """Gold evaluation cadence, hacking detection and the final report's extras."""

    every_n_steps: int = Field(
        default=25, ge=1, description="Gold-score policy samples on held-out prompts every N steps."
    )
    heldout_prompts: int | None = Field(
        default=None,
        ge=1,
        description="Held-out prompts per evaluation. Unset: all of data.splits.policy_eval.",
    )
    samples_per_prompt: int = Field(
        default=1, ge=1, le=64, description="Policy samples per prompt."
    )
    seed: int = Field(
        default=1234, description="Seed for evaluation sampling (same prompts every time)."
    )
    hacking_margin: float = Field(
        default=0.1,
        gt=0,
        le=1,
        description="An arm is flagged as hacking when its proxy reward is still rising while "
        "its gold reward has fallen this far below its best, both normalised to [0, 1].",
    )
    baseline_answers: str | None = Field(
        default=None,
        description="JSON Lines file of baseline answers ({id and/or prompt, answer}; relative to "
        "the experiment file) for the Arena-Hard-style win rate judged by gold. Unset: the win "
        "rate is against the initial policy.",
    )
    cross_judge_matrix: bool = Field(
        default=True, description="Have every judge score every arm's final outputs."
    )
    adversarial_patterns: bool = Field(
        default=True,
        description="Count known judge-gaming patterns (self-ratings, flattery, refusals, "
        "length padding) in policy outputs.",
    )

    @model_validator(mode="after")
    def _check_files(self) -> EvaluationSpec:
        issues: list[Issue] = []
        if self.baseline_answers is not None and not self.baseline_answers.endswith(".jsonl"):
            issues.append(
                Issue(("baseline_answers",), self.baseline_answers, "must be a .jsonl file")
            )
        raise_issues(issues)
        return self
