"""The policy being post-trained and the algorithm that trains it."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from judgelab.spec.common import Issue, raise_issues
from judgelab.spec.model import ModelSpec, StrictModel
from judgelab.spec.training import LoraSpec

Baseline = Literal["sft-on-references", "reference-free"]
DataParallel = Literal["ddp", "fsdp"]
BASELINES: tuple[Baseline, ...] = ("sft-on-references", "reference-free")


class GenerationSpec(StrictModel):
    """How the policy samples rollouts and evaluation answers."""

    temperature: float = Field(
        default=0.7, ge=0, le=2, description="Sampling temperature (published recipe: 0.7)."
    )
    top_p: float = Field(default=1.0, gt=0, le=1, description="Nucleus sampling threshold.")
    max_new_tokens: int = Field(default=1024, ge=1, description="Longest response in tokens.")


class GrpoAlgorithm(StrictModel):
    """Online GRPO against a proxy judge: group-normalised advantages, clipped ratio loss."""

    name: Literal["grpo"] = Field(description="Algorithm: online GRPO against a proxy judge.")
    group_size: int = Field(
        default=8, ge=1, le=256, description="Rollouts per prompt, G (published: 8)."
    )
    learning_rate: float = Field(
        default=1e-6, gt=0, lt=1, description="Learning rate (published: 1e-6)."
    )
    epsilon_low: float = Field(
        default=0.2, gt=0, lt=1, description="Lower clip of the probability ratio: 1 - epsilon_low."
    )
    epsilon_high: float = Field(
        default=0.2,
        gt=0,
        lt=1,
        description="Upper clip of the ratio: 1 + epsilon_high. Default 0.2, the symmetric clip "
        "of the original GRPO/PPO objective the published recipe uses; 0.28 is DAPO's "
        "'clip-higher', which keeps exploration up but changes the recipe being studied.",
    )
    beta: float = Field(
        default=0.0,
        ge=0,
        description="KL(π‖π_init) coefficient in the loss; 0 = no KL term (published recipe). "
        "The KL is still measured and logged.",
    )
    scale_rewards: bool = Field(
        default=True, description="Divide advantages by the group's reward standard deviation."
    )
    loss_type: Literal["token-mean", "sequence-mean"] = Field(
        default="token-mean",
        description="`token-mean`: average the loss over all tokens of the batch (no bias "
        "toward short or long responses); `sequence-mean`: average per response first, then "
        "over responses (the original GRPO).",
    )
    steps: int = Field(default=500, ge=1, description="Optimiser steps (policy versions) to train.")
    prompts_per_step: int = Field(
        default=32, ge=1, description="Prompts per optimiser step; each gets group_size rollouts."
    )
    gradient_accumulation_steps: int = Field(
        default=1,
        ge=1,
        description="Micro-batches per optimiser step; must divide prompts_per_step.",
    )
    max_grad_norm: float = Field(default=1.0, gt=0, description="Gradient clipping norm.")
    max_staleness: int = Field(
        default=1,
        ge=0,
        description="Most policy versions a rollout may lag behind the learner; older rollouts "
        "are dropped and counted. 0 = strictly on-policy.",
    )
    data_parallel: DataParallel = Field(
        default="ddp",
        description="Data parallelism of a learner running as several processes under "
        "torchrun: `ddp` keeps the whole model in every process and averages gradients "
        "(DistributedDataParallel); `fsdp` shards parameters, gradients and optimiser state "
        "over the processes (FSDP2 `fully_shard` per decoder layer), for a model too large for "
        "one device. Both take the same steps as one process; a single process ignores it.",
    )

    @model_validator(mode="after")
    def _check_grpo(self) -> GrpoAlgorithm:
        issues: list[Issue] = []
        if self.group_size < 2:
            issues.append(
                Issue(
                    ("group_size",),
                    self.group_size,
                    "must be at least 2: advantages are normalised within a group, and pairwise "
                    "judges compare each rollout with the other G-1",
                )
            )
        if self.epsilon_high < self.epsilon_low:
            issues.append(
                Issue(
                    ("epsilon_high",),
                    self.epsilon_high,
                    f"must be at least epsilon_low ({self.epsilon_low})",
                )
            )
        if self.prompts_per_step % self.gradient_accumulation_steps:
            issues.append(
                Issue(
                    ("gradient_accumulation_steps",),
                    self.gradient_accumulation_steps,
                    f"must divide prompts_per_step ({self.prompts_per_step})",
                )
            )
        raise_issues(issues)
        return self


class DpoSelfJudgeAlgorithm(StrictModel):
    """Reference-guided self-improvement: the policy judges its own samples, best vs worst
    become a DPO pair, for one or more rounds."""

    name: Literal["dpo-self-judge"] = Field(
        description="Algorithm: DPO on pairs the policy picks by judging its own samples."
    )
    num_candidates: int = Field(
        default=5, ge=2, le=64, description="Samples per prompt the policy judges (k)."
    )
    temperature: float = Field(
        default=0.8, gt=0, le=2, description="Candidate sampling temperature."
    )
    top_p: float = Field(
        default=0.95, gt=0, le=1, description="Candidate nucleus sampling threshold."
    )
    beta: float = Field(
        default=0.1, gt=0, description="DPO beta (strength of the implicit KL anchor)."
    )
    learning_rate: float = Field(default=5e-7, gt=0, lt=1, description="DPO learning rate.")
    rounds: int = Field(
        default=1,
        ge=1,
        le=20,
        description="Rounds of sample → self-judge → DPO, each from the last.",
    )
    epochs: int = Field(default=1, ge=1, le=100, description="DPO passes over each round's pairs.")
    batch_size: int = Field(default=8, ge=1, description="Pairs per optimiser step.")
    with_reference: bool = Field(
        default=True,
        description="Put the reference answer in the self-judging prompt (RefEval-style).",
    )
    both_orders: bool = Field(
        default=True,
        description="Judge each candidate pair in both orders and average (position bias).",
    )
    baselines: list[Baseline] = Field(
        default_factory=lambda: list(BASELINES),
        description="Comparison arms: `sft-on-references` (SFT on the reference answers) and "
        "`reference-free` (the same loop without the reference).",
    )
    external_judge: str | None = Field(
        default=None,
        min_length=1,
        description="Name of a pairwise judge in `spec.judges`: adds the arm `external-judge`, "
        "the same loop with every comparison made by that judge through the judge pool (after "
        "TrainJudges trained it; recipe `none` serves it as configured), with the reference "
        "when that judge is reference-guided. Unset: no such arm.",
    )


Algorithm = Annotated[GrpoAlgorithm | DpoSelfJudgeAlgorithm, Field(discriminator="name")]


def _default_algorithm() -> GrpoAlgorithm:
    return GrpoAlgorithm(name="grpo")


class PolicySpec(StrictModel):
    """The model being post-trained."""

    model: ModelSpec = Field(
        description="Starting policy (published: meta-llama/Llama-3.1-8B-Instruct)."
    )
    lora: LoraSpec = Field(default_factory=LoraSpec, description="Adapters for policy training.")
    generation: GenerationSpec = Field(
        default_factory=GenerationSpec, description="Rollout and evaluation sampling."
    )
    algorithm: Algorithm = Field(
        default_factory=_default_algorithm,
        description="Training algorithm, chosen by `name`: `grpo` or `dpo-self-judge`.",
    )
