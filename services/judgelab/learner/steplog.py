"""What one learner step records (a line of ``steps.jsonl``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StepTimes:
    """Seconds of one step by where they went; None where the learner cannot know."""

    generate: float | None = None
    judge: float | None = None
    train: float = 0.0
    wait: float = 0.0


@dataclass(frozen=True)
class StepLog:
    """Metrics of one optimiser step (token-weighted means over completion tokens)."""

    step: int
    policy_version: int
    loss: float
    reward_mean: float
    reward_std: float
    kl: float
    entropy: float
    completion_length_mean: float
    clip_fraction: float
    clip_low: float
    clip_high: float
    ratio_mean: float
    grad_norm: float
    learning_rate: float
    staleness_mean: float
    staleness_max: int
    groups: int
    completions: int
    tokens: int
    times: StepTimes = field(default_factory=StepTimes)
    group_ids: tuple[str, ...] = ()
    evaluation: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """The ``steps.jsonl`` line; carries the report's names (``proxy_reward_mean``, ``eval``:
        see ``judgelab.evaluation.report``) next to the trainer's own."""
        data = dataclasses.asdict(self)
        data["group_ids"] = list(self.group_ids)
        data["proxy_reward_mean"] = self.reward_mean
        data["proxy_reward_std"] = self.reward_std
        evaluation = data.pop("evaluation")
        if evaluation is not None:
            data["eval"] = evaluation
        return data

    def with_times(self, times: StepTimes) -> StepLog:
        return dataclasses.replace(self, times=times)

    def with_evaluation(self, evaluation: dict[str, Any]) -> StepLog:
        return dataclasses.replace(self, evaluation=evaluation)
