"""What judges return. Fields map one to one onto ``judgelab.v1.Score`` / ``PairwiseResult``.

An invalid judgement is a value, not an exception: ``valid`` is false, ``invalid_reason`` says
why with one of the codes of ``common.proto`` and ``detail`` keeps the human-readable cause.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

InvalidReason = Literal[
    "unparseable", "out_of_range", "truncated", "empty_output", "engine_error", "too_long"
]
#: A pairwise verdict, always about the responses A and B of the pair (not display slots).
Verdict = Literal["A", "B", "tie"]
#: Display order of a pair: "AB" shows response A first, "BA" shows response B first.
Order = Literal["AB", "BA"]


@dataclass(frozen=True)
class Stamp:
    """Which judge, template and configuration produced a judgement."""

    judge: str
    template_id: str
    template_hash: str
    config_hash: str


class Stamped:
    """The stamp's fields, readable on the judgement itself (as the proto carries them)."""

    stamp: Stamp

    @property
    def template_id(self) -> str:
        return self.stamp.template_id

    @property
    def template_hash(self) -> str:
        return self.stamp.template_hash

    @property
    def config_hash(self) -> str:
        return self.stamp.config_hash


@dataclass(frozen=True)
class PointwiseJudgement(Stamped):
    """One score. ``expected`` = sum(value * prob) over ``distribution`` (ascending values);
    ``argmax`` is the most probable value, or the parsed value for reasoning judges.
    Invalid: expected 0, argmax 0, empty distribution, mass 0."""

    sample_id: str
    stamp: Stamp
    expected: float
    argmax: int
    distribution: tuple[tuple[int, float], ...]
    mass: float
    reasoning: str
    valid: bool
    invalid_reason: InvalidReason | None
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    detail: str = ""


@dataclass(frozen=True)
class PairwiseOrderJudgement:
    """The judge's verdict with the pair shown in one order, mapped back to A/B."""

    order: Order
    p_a_preferred: float
    preferred: Verdict | None
    reasoning: str
    valid: bool
    invalid_reason: InvalidReason | None
    prompt_tokens: int
    completion_tokens: int
    detail: str = ""


@dataclass(frozen=True)
class PairwiseJudgement(Stamped):
    """A pair over one or both orders. ``p_a_preferred`` is the mean over the valid orders
    (0.5 when none is valid); ``position_consistent`` is true when every valid order gives the
    same verdict (false when none is valid)."""

    pair_id: str
    stamp: Stamp
    p_a_preferred: float
    preferred: Verdict | None
    orders: tuple[PairwiseOrderJudgement, ...]
    position_consistent: bool
    valid: bool
    invalid_reason: InvalidReason | None
    latency_s: float
    detail: str = ""

    @property
    def prompt_tokens(self) -> int:
        return sum(order.prompt_tokens for order in self.orders)

    @property
    def completion_tokens(self) -> int:
        return sum(order.completion_tokens for order in self.orders)


@dataclass(frozen=True)
class GroupJudgement:
    """A GRPO group: each response's mean win rate against the other G-1, and the pairs."""

    win_rates: tuple[float, ...]
    pairs: tuple[PairwiseJudgement, ...]
