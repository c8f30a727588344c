"""The learner's training settings, taken from ``spec.policy`` (GRPO algorithm, LoRA, sampling)."""

from __future__ import annotations

from dataclasses import dataclass, field

from judgelab.engines.mixed_precision import MixedPrecision
from judgelab.learner.grpo import LossType
from judgelab.spec.policy import DataParallel, GrpoAlgorithm, PolicySpec
from judgelab.spec.training import LLAMA_LINEAR_MODULES, LoraSpec


@dataclass(frozen=True)
class LoraSettings:
    """peft ``LoraConfig`` inputs; ``enabled=False`` trains every weight."""

    enabled: bool = True
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] = LLAMA_LINEAR_MODULES

    @classmethod
    def from_spec(cls, lora: LoraSpec) -> LoraSettings:
        return cls(
            enabled=lora.enabled,
            r=lora.r,
            alpha=lora.alpha,
            dropout=lora.dropout,
            target_modules=tuple(lora.target_modules),
        )


@dataclass(frozen=True)
class TrainerSettings:
    """Everything :class:`~judgelab.learner.trainer.GrpoTrainer` needs besides model and data.

    ``temperature`` is the rollout sampling temperature: log-probs are computed on logits divided
    by it (TRL's convention), so the importance ratio compares the distribution sampled from.
    """

    group_size: int = 8
    learning_rate: float = 1e-6
    epsilon_low: float = 0.2
    epsilon_high: float = 0.2
    beta: float = 0.0
    scale_rewards: bool = True
    loss_type: LossType = "token-mean"
    gradient_accumulation_steps: int = 1
    max_grad_norm: float = 1.0
    max_staleness: int = 1
    temperature: float = 1.0
    seed: int = 0
    lora: LoraSettings = field(default_factory=LoraSettings)
    #: ``bf16``: forward and backward under bfloat16 autocast (see engines.mixed_precision).
    mixed_precision: MixedPrecision = "no"
    #: Under torchrun: ``ddp`` (whole model per rank) or ``fsdp`` (sharded, FSDP2).
    data_parallel: DataParallel = "ddp"

    def __post_init__(self) -> None:
        if self.group_size < 1 or self.gradient_accumulation_steps < 1 or self.max_staleness < 0:
            raise ValueError(
                "need group_size >= 1, gradient_accumulation_steps >= 1, max_staleness >= 0"
            )
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")


def settings_from_spec(policy: PolicySpec, seed: int) -> TrainerSettings:
    """Settings of a GRPO policy arm; ValueError for another algorithm."""
    algo = policy.algorithm
    if not isinstance(algo, GrpoAlgorithm):
        raise ValueError(f"the GRPO learner cannot train algorithm {algo.name!r}")
    return TrainerSettings(
        group_size=algo.group_size,
        learning_rate=algo.learning_rate,
        epsilon_low=algo.epsilon_low,
        epsilon_high=algo.epsilon_high,
        beta=algo.beta,
        scale_rewards=algo.scale_rewards,
        loss_type=algo.loss_type,
        gradient_accumulation_steps=algo.gradient_accumulation_steps,
        max_grad_norm=algo.max_grad_norm,
        max_staleness=algo.max_staleness,
        # Greedy sampling (temperature 0) has no distribution to divide by: score at 1.
        temperature=policy.generation.temperature or 1.0,
        seed=seed,
        lora=LoraSettings.from_spec(policy.lora),
        mixed_precision=policy.model.mixed_precision,
        data_parallel=algo.data_parallel,
    )
