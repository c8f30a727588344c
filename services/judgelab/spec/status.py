"""The `status` the operator writes (camelCase, as Kubernetes status fields are)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import ConfigDict, Field

from judgelab.spec.model import StrictModel

Phase = Literal[
    "Pending", "Annotating", "TrainingJudges", "TrainingPolicy", "Evaluating", "Succeeded", "Failed"
]


class OperatorStatusModel(StrictModel):
    """Status is operator-owned; unknown keys (e.g. kopf's own bookkeeping) are ignored."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, allow_inf_nan=False)


class Condition(OperatorStatusModel):
    """A standard Kubernetes condition (metav1.Condition)."""

    type: str = Field(
        min_length=1,
        description="Condition type, e.g. Ready, Annotated, JudgesTrained, PolicyTrained.",
    )
    status: Literal["True", "False", "Unknown"] = Field(description="Whether the condition holds.")
    reason: str = Field(default="", description="One CamelCase word for the last transition.")
    message: str = Field(default="", description="Human-readable detail of the last transition.")
    last_transition_time: datetime | None = Field(
        default=None, alias="lastTransitionTime", description="When the status last changed."
    )
    observed_generation: int | None = Field(
        default=None,
        ge=0,
        alias="observedGeneration",
        description="metadata.generation the condition was set for.",
    )


class ArmStatus(OperatorStatusModel):
    """Latest numbers of one policy arm."""

    name: str = Field(min_length=1, description="Arm name.")
    judge: str = Field(default="", description="Proxy judge the arm optimises.")
    step: int = Field(default=0, ge=0, description="Last finished policy step.")
    proxy_reward: float | None = Field(
        default=None, alias="proxyReward", description="Mean proxy reward at the last step."
    )
    gold_reward: float | None = Field(
        default=None,
        alias="goldReward",
        description="Mean gold reward at the last gold evaluation.",
    )
    kl: float | None = Field(default=None, description="KL(π‖π_init) at the last step.")
    hacking: bool = Field(
        default=False, description="Whether the arm is flagged as reward hacking."
    )


class ExperimentStatus(OperatorStatusModel):
    """Where the study stands."""

    phase: Phase = Field(default="Pending", description="Current phase of the study.")
    message: str = Field(default="", description="Human-readable detail of the phase.")
    observed_generation: int | None = Field(
        default=None,
        ge=0,
        alias="observedGeneration",
        description="metadata.generation the operator last acted on.",
    )
    step: int | None = Field(
        default=None, ge=0, description="Policy step of the slowest arm (printer column)."
    )
    proxy_reward: float | None = Field(
        default=None,
        alias="proxyReward",
        description="Mean proxy reward over arms (printer column).",
    )
    gold_reward: float | None = Field(
        default=None, alias="goldReward", description="Mean gold reward over arms (printer column)."
    )
    hacking: str = Field(
        default="", description="Comma-separated names of arms flagged as hacking (printer column)."
    )
    conditions: list[Condition] = Field(
        default_factory=list, description="Standard conditions, one per type."
    )
    arms: list[ArmStatus] = Field(default_factory=list, description="Per-arm numbers, by name.")
