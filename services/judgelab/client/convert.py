"""Client dataclasses <-> judgelab.v1 protobuf messages."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, TypedDict

from judgelab.api.v1 import common_pb2, gold_annotator_pb2, judge_pool_pb2
from judgelab.client.types import (
    Annotation,
    JudgeInfo,
    Message,
    OrderResult,
    Pair,
    PairwiseResult,
    Sample,
    ScoreResult,
    Verdict,
)

_ROLES = {
    "system": common_pb2.ROLE_SYSTEM,
    "user": common_pb2.ROLE_USER,
    "assistant": common_pb2.ROLE_ASSISTANT,
}
_VERDICTS: dict[int, Verdict | None] = {
    common_pb2.PREFERENCE_A: "A",
    common_pb2.PREFERENCE_B: "B",
    common_pb2.PREFERENCE_TIE: "tie",
    common_pb2.PREFERENCE_UNSPECIFIED: None,
}
_ORDERS: dict[int, Literal["AB", "BA"]] = {
    common_pb2.PAIR_ORDER_AB: "AB",
    common_pb2.PAIR_ORDER_BA: "BA",
}
_PROTOCOLS: dict[int, Literal["pointwise", "pairwise"]] = {
    common_pb2.PROTOCOL_POINTWISE: "pointwise",
    common_pb2.PROTOCOL_PAIRWISE: "pairwise",
}


def prompt_to_proto(prompt: str | Sequence[Message]) -> list[common_pb2.ChatMessage]:
    turns = [Message("user", prompt)] if isinstance(prompt, str) else prompt
    return [
        common_pb2.ChatMessage(
            role=_ROLES.get(t.role, common_pb2.ROLE_UNSPECIFIED), content=t.content
        )
        for t in turns
    ]


def sample_to_proto(sample: Sample) -> common_pb2.Sample:
    message = common_pb2.Sample(
        id=sample.id,
        prompt=prompt_to_proto(sample.prompt),
        response=sample.response,
        metadata=dict(sample.metadata),
    )
    if sample.reference is not None:
        message.reference = sample.reference
    if sample.rubric is not None:
        message.rubric = sample.rubric
    return message


def pair_to_proto(pair: Pair) -> judge_pool_pb2.Pair:
    message = judge_pool_pb2.Pair(
        id=pair.id,
        prompt=prompt_to_proto(pair.prompt),
        response_a=pair.response_a,
        response_b=pair.response_b,
        metadata=dict(pair.metadata),
    )
    if pair.reference is not None:
        message.reference = pair.reference
    if pair.rubric is not None:
        message.rubric = pair.rubric
    return message


def score_from_proto(score: common_pb2.Score) -> ScoreResult:
    return ScoreResult(
        sample_id=score.sample_id,
        judge=score.judge,
        expected_score=score.expected_score,
        argmax_score=score.argmax_score,
        distribution={p.value: p.probability for p in score.distribution},
        score_mass=score.score_mass,
        reasoning=score.reasoning,
        **_stamp(score),
    )


def pairwise_from_proto(result: common_pb2.PairwiseResult) -> PairwiseResult:
    return PairwiseResult(
        pair_id=result.pair_id,
        judge=result.judge,
        prob_a_preferred=result.prob_a_preferred,
        preferred=_VERDICTS.get(result.preferred),
        orders=tuple(_order_from_proto(o) for o in result.orders),
        position_consistent=result.position_consistent,
        **_stamp(result),
    )


def _order_from_proto(order: common_pb2.PairwiseOrderResult) -> OrderResult:
    return OrderResult(
        order=_ORDERS.get(order.order, "AB"),
        prob_a_preferred=order.prob_a_preferred,
        preferred=_VERDICTS.get(order.preferred),
        reasoning=order.reasoning,
        **_outcome(order),
    )


class _Outcome(TypedDict):
    valid: bool
    invalid_reason: str
    latency_s: float
    tokens_in: int
    tokens_out: int


class _Stamp(_Outcome):
    template_id: str
    template_hash: str
    judge_config_hash: str


def _outcome(
    result: common_pb2.Score | common_pb2.PairwiseResult | common_pb2.PairwiseOrderResult,
) -> _Outcome:
    """The fields every judgement carries: validity, latency, token counts."""
    return _Outcome(
        valid=result.valid,
        invalid_reason=result.invalid_reason,
        latency_s=result.latency.ToNanoseconds() / 1e9,
        tokens_in=result.tokens_in,
        tokens_out=result.tokens_out,
    )


def _stamp(result: common_pb2.Score | common_pb2.PairwiseResult) -> _Stamp:
    """:func:`_outcome` plus the template and judge configuration that produced it."""
    return _Stamp(
        **_outcome(result),
        template_id=result.template_id,
        template_hash=result.template_hash,
        judge_config_hash=result.judge_config_hash,
    )


def judge_from_proto(info: judge_pool_pb2.JudgeInfo) -> JudgeInfo:
    spec = info.spec
    return JudgeInfo(
        name=spec.name,
        protocol=_PROTOCOLS.get(spec.protocol, "unspecified"),
        reasoning=spec.reasoning,
        reference_guided=spec.reference_guided,
        scale_min=spec.scale_min,
        scale_max=spec.scale_max,
        template_id=spec.template_id,
        model=info.model,
        ready=info.ready,
        judged_total=info.stats.judged_total,
        invalid_total=info.stats.invalid_total,
    )


def annotation_from_proto(annotation: gold_annotator_pb2.Annotation) -> Annotation:
    return Annotation(
        score=score_from_proto(annotation.score),
        gold_reasoning=annotation.gold_reasoning,
        cached=annotation.cached,
    )
