"""A judge's configuration, built from the experiment spec, and its stable hash.

``config_hash`` is the cache key of a judgement: a sha256 over a canonical JSON of every
field that can change what the judge says (model, engine, protocol, reasoning and its
limits, sampling, scale, template id and text hash, rubric text hash, and the model settings
that change outputs: dtype, scored top-k, extra request fields). The judge's name is
left out: renaming a judge does not change its judgements.

A judge shown the gold judge's per-prompt rubric (``rubric_source="gold"``) hashes
``rubric_source: "gold"`` and the rubric-writer template's hash in place of the fixed rubric's:
its stamp says so. The key is absent for every other judge, so their hashes (the gold cache's
keys among them) are unchanged.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from judgelab.judging.scale import Scale
from judgelab.judging.templates import (
    RUBRIC_TEMPLATE_ID,
    RUBRIC_WRITER_ID,
    Template,
    default_template_id,
)

if TYPE_CHECKING:
    from judgelab.spec.judges import GoldJudgeSpec, ProxyJudgeSpec
    from judgelab.spec.model import ModelSpec

EngineKind = Literal["transformers", "openai"]
ProtocolName = Literal["pointwise", "pairwise"]
RubricSourceName = Literal["fixed", "gold"]

#: Tokens allowed after a reasoning budget for the final verdict line.
FINAL_LINE_TOKENS = 32
#: Alternatives requested per generated token; the verdict position's ones give its distribution.
TOP_LOGPROBS = 20
#: Bumped when the meaning of the hashed fields changes.
HASH_VERSION = 1


@dataclass(frozen=True)
class JudgeConfig:
    """How one judge judges; ``template`` unset: the built-in one for its protocol and options."""

    name: str
    model: str
    engine: EngineKind = "transformers"
    #: Canonical JSON of the model settings that change outputs (dtype, top-k scored, extra body).
    model_settings: str = ""
    protocol: ProtocolName = "pointwise"
    reasoning: bool = False
    reasoning_budget: int | None = None
    max_new_tokens: int | None = None
    temperature: float = 0.0
    seed: int | None = None
    reasoning_effort: str | None = None
    reference_guided: bool = False
    rubric: bool = False
    #: ``fixed``: the generic criteria (rubric-v1); ``gold``: each item's own gold-written rubric.
    rubric_source: RubricSourceName = "fixed"
    scale: Scale = field(default_factory=Scale)
    template: str | None = None
    #: A reasoning pointwise judge cut off by its budget before its verdict gets the verdict
    #: line prefilled after its reasoning and its score read from the next-token distribution
    #: ("budget forcing"); off: such an output is an invalid ``truncated`` judgement.
    force_verdict: bool = True

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("name must not be empty")
        if not self.reasoning and (self.reasoning_budget or self.max_new_tokens):
            raise ValueError("reasoning_budget/max_new_tokens: only for reasoning judges")
        if self.reasoning_budget is not None and self.max_new_tokens is not None:
            raise ValueError("reasoning_budget: set it or max_new_tokens, not both")
        for name, value in (
            ("reasoning_budget", self.reasoning_budget),
            ("max_new_tokens", self.max_new_tokens),
        ):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.rubric_source == "gold" and not self.rubric:
            raise ValueError("rubric_source 'gold' needs rubric=True")
        if self.reads_score_tokens and not self.prefill and not self.scale.prefix_free:
            raise ValueError(
                f"scale: {self.scale.min}-{self.scale.max} needs scored multi-token answers "
                "('<n>/' after a 'Score: ' prefill), which the openai engine cannot do; use a "
                "prefix-free scale such as 0-9, a reasoning judge, or the transformers engine"
            )

    @classmethod
    def from_proxy_spec(cls, spec: ProxyJudgeSpec) -> JudgeConfig:
        return cls(
            name=spec.name,
            model=spec.model.name,
            engine=spec.model.engine,
            model_settings=model_settings(spec.model),
            protocol=spec.protocol,
            reasoning=spec.reasoning,
            reasoning_budget=spec.reasoning_budget,
            reference_guided=spec.reference_guided,
            rubric=spec.rubric,
            rubric_source=spec.rubric_source,
            scale=Scale(spec.scale.min, spec.scale.max),
            template=spec.template,
        )

    @classmethod
    def from_gold_spec(cls, spec: GoldJudgeSpec, name: str = "gold") -> JudgeConfig:
        """The gold judge: pointwise, reasoning, ``max_tokens`` for reasoning and verdict."""
        return cls(
            name=name,
            model=spec.model.name,
            engine=spec.model.engine,
            model_settings=model_settings(spec.model),
            reasoning=True,
            max_new_tokens=spec.max_tokens,
            temperature=spec.temperature,
            reasoning_effort=spec.reasoning_effort,
            scale=Scale(spec.scale.min, spec.scale.max),
            template=spec.template,
        )

    @property
    def template_id(self) -> str:
        return self.template or default_template_id(
            self.protocol, self.reasoning, self.reference_guided
        )

    @property
    def rubric_id(self) -> str | None:
        """The fixed rubric's template, or for gold rubrics the template that wrote them."""
        if not self.rubric:
            return None
        return RUBRIC_WRITER_ID if self.gold_rubric else RUBRIC_TEMPLATE_ID

    @property
    def gold_rubric(self) -> bool:
        """Each item brings its own rubric, written per prompt by the gold judge."""
        return self.rubric and self.rubric_source == "gold"

    @property
    def prefill(self) -> bool:
        """Whether the answer prefix ("Score: ") is prefilled; chat APIs cannot prefill."""
        return self.engine == "transformers"

    @property
    def reads_score_tokens(self) -> bool:
        """Non-reasoning pointwise: the score is read from candidate probabilities."""
        return self.protocol == "pointwise" and not self.reasoning

    @property
    def forces_verdict(self) -> bool:
        """Budget forcing applies: a pointwise reasoning judge on an engine that can prefill."""
        return self.force_verdict and self.reasoning and self.prefill and (
            self.protocol == "pointwise"
        )

    @property
    def generation_limit(self) -> int | None:
        """max_new_tokens for reasoning judges; None: whatever the model's context leaves."""
        if self.max_new_tokens is not None:
            return self.max_new_tokens
        if self.reasoning_budget is not None:
            return self.reasoning_budget + FINAL_LINE_TOKENS
        return None

    def config_hash(self, template: Template, rubric: Template | None = None) -> str:
        if template.id != self.template_id:
            raise ValueError(f"template {template.id!r} given, config names {self.template_id!r}")
        if (rubric is None) != (self.rubric_id is None):
            raise ValueError(f"judge {self.name!r}: rubric template given iff rubric is true")
        fields = {
            "hash_version": HASH_VERSION,
            "model": self.model,
            "engine": self.engine,
            "model_settings": self.model_settings,
            "prefill": self.prefill,
            "protocol": self.protocol,
            "reasoning": self.reasoning,
            "generation_limit": self.generation_limit,
            "force_verdict": self.forces_verdict,
            "temperature": self.temperature,
            "seed": self.seed,
            "reasoning_effort": self.reasoning_effort,
            "top_logprobs": TOP_LOGPROBS if self.reasoning else 0,
            "reference_guided": self.reference_guided,
            "scale": [self.scale.min, self.scale.max] if self.protocol == "pointwise" else None,
            "template_id": template.id,
            "template_sha256": template.sha256,
            "rubric_sha256": rubric.sha256 if rubric is not None else None,
        }
        if self.gold_rubric:
            fields["rubric_source"] = "gold"
        canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def model_settings(spec: ModelSpec) -> str:
    """The model spec's fields that change a judge's outputs, as canonical JSON."""
    settings = {
        "dtype": spec.dtype,
        "score_top_logprobs": spec.score_top_logprobs,
        "extra_body": spec.extra_body,
    }
    return json.dumps(settings, sort_keys=True, separators=(",", ":"))
