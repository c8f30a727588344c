"""Fine-tuning settings shared by the policy and the proxy judges: LoRA and SFT."""

from __future__ import annotations

from pydantic import Field, model_validator

from judgelab.spec.common import Issue, raise_issues
from judgelab.spec.model import StrictModel

# Attention and MLP projections of Llama-style blocks (Llama 3, Qwen3, SmolLM2 all use them).
LLAMA_LINEAR_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class LoraSpec(StrictModel):
    """Low-rank adapters (peft). On by default; `enabled: false` trains every weight."""

    enabled: bool = Field(
        default=True,
        description="Train LoRA adapters instead of the full weights. Adapters are also what "
        "the learner hands to a vLLM server (hot-loaded by name and version).",
    )
    r: int = Field(default=16, ge=1, le=1024, description="Rank of the low-rank update.")
    alpha: int = Field(
        default=32,
        ge=1,
        le=4096,
        description="LoRA scaling numerator; the update is scaled by alpha/r.",
    )
    dropout: float = Field(
        default=0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA input, in [0, 1)."
    )
    target_modules: list[str] = Field(
        default_factory=lambda: list(LLAMA_LINEAR_MODULES),
        description="Names of the linear modules that get adapters "
        "(default: every attention and MLP projection of a Llama-style block).",
    )

    @model_validator(mode="after")
    def _check_targets(self) -> LoraSpec:
        issues: list[Issue] = []
        if self.enabled and not self.target_modules:
            issues.append(
                Issue(
                    ("target_modules",),
                    self.target_modules,
                    "must name at least one module when LoRA is enabled",
                )
            )
        raise_issues(issues)
        return self


class SftSpec(StrictModel):
    """Supervised fine-tuning on gold labels (score only, or gold reasoning + score)."""

    learning_rate: float = Field(
        default=1e-5, gt=0, lt=1, description="Peak learning rate (AdamW)."
    )
    epochs: int = Field(
        default=2, ge=1, le=100, description="Passes over the judge-training split."
    )
    batch_size: int = Field(
        default=8, ge=1, le=4096, description="Sequences per optimiser micro-batch."
    )
    gradient_accumulation_steps: int = Field(
        default=1, ge=1, le=1024, description="Micro-batches accumulated per optimiser step."
    )
    max_length: int = Field(
        default=4096,
        ge=16,
        description="Longest training sequence in tokens (prompt + target); longer ones are "
        "truncated from the left of the prompt.",
    )
