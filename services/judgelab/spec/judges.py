"""The gold judge (what we want) and the proxy judges (what the policy optimises)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from judgelab.spec.common import DNS_LABEL_PATTERN, Issue, raise_issues
from judgelab.spec.model import ModelSpec, StrictModel
from judgelab.spec.training import LoraSpec, SftSpec

ReasoningEffort = Literal["low", "medium", "high"]
Protocol = Literal["pointwise", "pairwise"]
Recipe = Literal["none", "sft", "sft+grpo"]
RubricSource = Literal["fixed", "gold"]
GoldLabelRule = Literal["expected", "argmax"]

TEMPLATE_ID_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"


class ScoreScale(StrictModel):
    """Integer score range of a pointwise judge, inclusive."""

    min: int = Field(default=0, ge=0, le=100, description="Lowest score.")
    max: int = Field(default=9, ge=0, le=100, description="Highest score (published recipe: 0-9).")

    @model_validator(mode="after")
    def _check_order(self) -> ScoreScale:
        issues: list[Issue] = []
        if self.min >= self.max:
            issues.append(Issue(("min",), self.min, f"must be less than scale.max ({self.max})"))
        raise_issues(issues)
        return self

    @property
    def span(self) -> int:
        """max - min; the GRPO judge reward divides by its square."""
        return self.max - self.min


class GoldJudgeSpec(StrictModel):
    """The strong judge whose scores define the target (and measure hacking)."""

    model: ModelSpec = Field(
        description="The gold model (published: gpt-oss-120b served by vLLM, engine `openai`)."
    )
    reasoning_effort: ReasoningEffort | None = Field(
        default="high",
        description="Reasoning effort sent to reasoning models (gpt-oss, o-series); "
        "unset for models without the option.",
    )
    temperature: float = Field(
        default=0.0, ge=0, le=2, description="Sampling temperature; 0 is greedy (published recipe)."
    )
    max_tokens: int = Field(
        default=8192, ge=16, description="Most tokens the gold judge may write, reasoning included."
    )
    scale: ScoreScale = Field(
        default_factory=ScoreScale, description="Score range the gold judge is asked to use."
    )
    template: str | None = Field(
        default=None,
        pattern=TEMPLATE_ID_PATTERN,
        description="Prompt template id. Unset: the built-in pointwise template.",
    )
    requests_per_minute: int | None = Field(
        default=None, ge=1, description="Rate limit on gold requests (hosted APIs); unset: none."
    )
    cache: bool = Field(
        default=True,
        description="Keep gold labels in the durable cache keyed by (judge config, prompt, "
        "response), so nothing is paid for twice.",
    )
    label: GoldLabelRule = Field(
        default="expected",
        description="The integer label judges learn from and are measured against: `expected` "
        "rounds the gold judge's expected score (the score the policy's gold reward uses); "
        "`argmax` takes its most likely score. They differ when gold is unsure (a flat "
        "distribution), where the argmax is mostly noise.",
    )

    @model_validator(mode="after")
    def _check_budget(self) -> GoldJudgeSpec:
        issues: list[Issue] = []
        limit = self.model.context_length
        if limit is not None and self.max_tokens >= limit:
            issues.append(
                Issue(
                    ("max_tokens",),
                    self.max_tokens,
                    f"must be less than model.context_length ({limit}) "
                    "to leave room for the prompt",
                )
            )
        raise_issues(issues)
        return self


class JudgeGrpoSpec(StrictModel):
    """GRPO for reasoning judges: reward `(M-(ŝ-s)²)/M` against gold, -1 if unparseable."""

    num_generations: int = Field(
        default=8, ge=2, le=256, description="Rollouts per judge-training item (published: 8)."
    )
    learning_rate: float = Field(
        default=1e-6, gt=0, lt=1, description="Learning rate (published: 1e-6)."
    )
    beta: float = Field(
        default=0.0,
        ge=0,
        description="KL coefficient; 0 = no KL term (published recipe; KL still logged).",
    )
    steps: int = Field(default=200, ge=1, description="Optimiser steps.")
    prompts_per_step: int = Field(
        default=16,
        ge=1,
        description="Judge-training items per step (each gets num_generations rollouts).",
    )
    temperature: float = Field(default=1.0, gt=0, le=2, description="Rollout sampling temperature.")
    force_verdict: bool = Field(
        default=True,
        description="Judges that force their verdict at inference (pointwise reasoning judges "
        "with budget forcing) get it forced in GRPO too: a rollout without a valid verdict line "
        "gets `Score: n` appended (n sampled from the judge's distribution there), trains on "
        "those tokens and is rewarded minus `forced_penalty`; off: such a rollout gets -1.",
    )
    forced_penalty: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Subtracted from a forced verdict's reward, so finishing on its own pays "
        "(0: no penalty; 1: a forced verdict earns at most 0, an invalid one -1).",
    )


class JudgeTrainingSpec(StrictModel):
    """How a proxy judge learns from the gold labels."""

    recipe: Recipe | None = Field(
        default=None,
        description="`none`: use the model as it is; `sft`: supervised on gold (score only, or "
        "gold reasoning + score for reasoning judges); `sft+grpo`: SFT then GRPO against gold "
        "(reasoning judges only). Unset: `sft+grpo` for reasoning judges, `sft` otherwise.",
    )
    sft: SftSpec = Field(default_factory=SftSpec, description="SFT settings.")
    grpo: JudgeGrpoSpec = Field(
        default_factory=JudgeGrpoSpec, description="GRPO settings (recipe `sft+grpo` only)."
    )
    lora: LoraSpec = Field(default_factory=LoraSpec, description="Adapters for judge training.")


class ProxyJudgeSpec(StrictModel):
    """A smaller judge trained to imitate gold; one policy arm optimises against it."""

    name: str = Field(
        max_length=63,
        pattern=DNS_LABEL_PATTERN,
        description="Unique judge name; a DNS-1123 label (used in service, stream and metric "
        "label names).",
    )
    model: ModelSpec = Field(description="The judge model (published: Qwen3 family).")
    protocol: Protocol = Field(
        default="pointwise",
        description="`pointwise`: one response, a score on the scale (the reward is the expected "
        "score over the score tokens); `pairwise`: two responses, a preference (the reward is "
        "the mean win rate against the other rollouts of the group).",
    )
    reasoning: bool = Field(
        default=False, description="Let the judge think before it answers (thinking mode)."
    )
    reasoning_budget: int | None = Field(
        default=None,
        ge=16,
        description="Most thinking tokens (reasoning judges only). Unset: the model's limit.",
    )
    reference_guided: bool = Field(
        default=False, description="Show the judge a reference answer next to the response."
    )
    rubric: bool = Field(
        default=False, description="Include the scoring rubric in the judge prompt."
    )
    rubric_source: RubricSource = Field(
        default="fixed",
        description="Where the rubric comes from (rubric: true only): `fixed`: the same generic "
        "criteria for every prompt; `gold`: the gold judge writes a rubric per prompt once, "
        "in the Annotate phase (RUN/annotate/rubrics.jsonl), and the judge sees that prompt's.",
    )
    scale: ScoreScale = Field(
        default_factory=ScoreScale,
        description="Score range (pointwise only); must equal the gold judge's scale.",
    )
    template: str | None = Field(
        default=None,
        pattern=TEMPLATE_ID_PATTERN,
        description="Prompt template id. Unset: the built-in template for this protocol with the "
        "reference and rubric sections as enabled.",
    )
    training: JudgeTrainingSpec = Field(
        default_factory=JudgeTrainingSpec, description="How the judge is trained on gold labels."
    )

    @model_validator(mode="after")
    def _check_judge(self) -> ProxyJudgeSpec:
        issues = self._reasoning_issues() + self._recipe_issues()
        if self.rubric_source != "fixed" and not self.rubric:
            issues.append(
                Issue(
                    ("rubric_source",),
                    self.rubric_source,
                    "needs rubric: true (a judge without a rubric has no rubric source)",
                )
            )
        if self.protocol == "pairwise" and self.scale != ScoreScale():
            issues.append(
                Issue(
                    ("scale",),
                    self.scale.model_dump(),
                    "pairwise judges output a preference, not a score; remove scale",
                )
            )
        raise_issues(issues)
        if self.training.recipe is None:
            self.training.recipe = "sft+grpo" if self.reasoning else "sft"
        return self

    def _reasoning_issues(self) -> list[Issue]:
        issues: list[Issue] = []
        if self.reasoning_budget is not None and not self.reasoning:
            issues.append(
                Issue(
                    ("reasoning_budget",),
                    self.reasoning_budget,
                    "only for reasoning judges; set reasoning: true or remove it",
                )
            )
        limit = self.model.context_length
        if (
            self.reasoning_budget is not None
            and limit is not None
            and self.reasoning_budget >= limit
        ):
            issues.append(
                Issue(
                    ("reasoning_budget",),
                    self.reasoning_budget,
                    f"must be less than model.context_length ({limit})",
                )
            )
        return issues

    def _recipe_issues(self) -> list[Issue]:
        issues: list[Issue] = []
        recipe = self.training.recipe
        if recipe == "sft+grpo" and not self.reasoning:
            issues.append(
                Issue(
                    ("training", "recipe"),
                    recipe,
                    "'sft+grpo' trains the judge's reasoning and needs reasoning: true; "
                    "non-reasoning judges allow 'none' or 'sft'",
                )
            )
        # Compared with the defaults, not "was it written", so that a dumped spec loads again.
        grpo_given = self.training.grpo != JudgeGrpoSpec()
        if grpo_given and recipe not in ("sft+grpo", None):
            issues.append(
                Issue(
                    ("training", "grpo"),
                    self.training.grpo.model_dump(),
                    f"is ignored with recipe {recipe!r}; remove it or use recipe 'sft+grpo'",
                )
            )
        if grpo_given and recipe is None and not self.reasoning:
            issues.append(
                Issue(
                    ("training", "grpo"),
                    self.training.grpo.model_dump(),
                    "is ignored: a non-reasoning judge is trained with 'sft'; remove it",
                )
            )
        return issues
