"""An arm's training log as plain arrays: every step's proxy reward, and the evaluation points."""

from __future__ import annotations

from dataclasses import dataclass

from judgelab.evaluation.report.steps import StepRecord


@dataclass(frozen=True)
class EvalPoint:
    """One evaluation with a gold score; ``proxy`` is the held-out proxy mean, else the step's."""

    step: int
    gold: float
    proxy: float | None
    kl: float | None


@dataclass(frozen=True)
class ArmSeries:
    arm: str
    steps: list[StepRecord]
    evals: list[EvalPoint]

    @classmethod
    def of(cls, arm: str, steps: list[StepRecord]) -> ArmSeries:
        evals = [
            EvalPoint(
                r.step,
                r.eval.gold_reward_mean,
                r.eval.proxy_reward_mean
                if r.eval.proxy_reward_mean is not None
                else r.proxy_reward_mean,
                r.kl,
            )
            for r in steps
            if r.eval is not None and r.eval.gold_reward_mean is not None
        ]
        return cls(arm, steps, evals)

    def onset_points(self) -> list[EvalPoint]:
        """Evaluations with both a gold and a proxy mean (what the onset detector needs)."""
        return [e for e in self.evals if e.proxy is not None]

    def kl_points(self) -> list[EvalPoint]:
        return [e for e in self.evals if e.kl is not None]


def fmt(value: float | None, digits: int = 3) -> str:
    """A number for a table cell; "—" for a value that was not recorded or is undefined."""
    return "—" if value is None else f"{value:.{digits}f}"
