"""Typed inputs and results of the judgelab API: plain dataclasses, no protobuf in sight."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

RoleName = Literal["system", "user", "assistant"]
Verdict = Literal["A", "B", "tie"]


@dataclass(frozen=True)
class Message:
    """One chat turn."""

    role: RoleName
    content: str


@dataclass(frozen=True)
class Sample:
    """A (prompt, response) pair to score. A plain-string prompt is one user turn."""

    id: str
    prompt: str | Sequence[Message]
    response: str
    reference: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    #: The prompt's own rubric, for judges with gold rubrics (``JudgeInfo.rubric == "gold"``).
    rubric: str | None = None


@dataclass(frozen=True)
class Pair:
    """Two responses to one prompt, to compare."""

    id: str
    prompt: str | Sequence[Message]
    response_a: str
    response_b: str
    reference: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    rubric: str | None = None


@dataclass(frozen=True)
class ScoreResult:
    """One pointwise judgement (see ``judgelab.v1.Score`` in docs/api-reference.md)."""

    sample_id: str
    judge: str
    expected_score: float
    argmax_score: int
    distribution: dict[int, float]
    score_mass: float
    reasoning: str
    valid: bool
    invalid_reason: str
    template_id: str
    template_hash: str
    judge_config_hash: str
    latency_s: float
    tokens_in: int
    tokens_out: int

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["distribution"] = {str(k): v for k, v in self.distribution.items()}
        return data


@dataclass(frozen=True)
class OrderResult:
    """A pairwise judgement with the responses shown in one order."""

    order: Literal["AB", "BA"]
    prob_a_preferred: float
    preferred: Verdict | None
    reasoning: str
    valid: bool
    invalid_reason: str
    latency_s: float
    tokens_in: int
    tokens_out: int


@dataclass(frozen=True)
class PairwiseResult:
    """One pairwise judgement over one or both orders."""

    pair_id: str
    judge: str
    prob_a_preferred: float
    preferred: Verdict | None
    orders: tuple[OrderResult, ...]
    position_consistent: bool
    valid: bool
    invalid_reason: str
    template_id: str
    template_hash: str
    judge_config_hash: str
    latency_s: float
    tokens_in: int
    tokens_out: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class JudgeInfo:
    """A judge the pool serves."""

    name: str
    protocol: Literal["pointwise", "pairwise", "unspecified"]
    reasoning: bool
    reference_guided: bool
    scale_min: int
    scale_max: int
    template_id: str
    model: str
    ready: bool
    judged_total: int
    invalid_total: int


@dataclass(frozen=True)
class Annotation:
    """A gold judgement: the score, the gold model's reasoning, whether it was cached."""

    score: ScoreResult
    gold_reasoning: str
    cached: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": self.score.to_dict(),
            "gold_reasoning": self.gold_reasoning,
            "cached": self.cached,
        }
