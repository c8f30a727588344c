"""Wire messages ↔ judging values, with request validation that names the bad field.

Everything a caller can get wrong about a sample's shape is checked here, once, for every
service: missing ids, duplicate ids, empty or whitespace-only prompts and responses, roles.
Judge-specific checks (reference needed, context length) belong to the judge pool/annotator.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from google.protobuf.duration_pb2 import Duration

from judgelab.api.v1 import common_pb2, judge_pool_pb2
from judgelab.engines.base import ChatMessage, Role
from judgelab.judging.results import PairwiseJudgement, PointwiseJudgement, Verdict
from judgelab.judging.samples import Pair, Sample
from judgelab.serving.errors import invalid

ROLES: dict[int, Role] = {
    common_pb2.ROLE_SYSTEM: "system",
    common_pb2.ROLE_USER: "user",
    common_pb2.ROLE_ASSISTANT: "assistant",
}
PREFERENCES = {
    "A": common_pb2.PREFERENCE_A,
    "B": common_pb2.PREFERENCE_B,
    "tie": common_pb2.PREFERENCE_TIE,
    None: common_pb2.PREFERENCE_UNSPECIFIED,
}
ORDERS = {"AB": common_pb2.PAIR_ORDER_AB, "BA": common_pb2.PAIR_ORDER_BA}
#: Longest text field accepted (characters); longer inputs are refused before tokenizing.
MAX_TEXT_CHARS = 1_000_000


def samples_from_proto(
    samples: Sequence[common_pb2.Sample], field: str = "samples"
) -> list[Sample]:
    if not samples:
        raise invalid(field, "REQUIRED", "at least one sample is required")
    _check_ids([s.id for s in samples], field)
    return [
        Sample(
            id=s.id,
            prompt=prompt_from_proto(s.prompt, f"{field}[{i}].prompt"),
            response=_text(s.response, f"{field}[{i}].response"),
            reference=_reference(s, f"{field}[{i}].reference"),
            rubric=_rubric(s, f"{field}[{i}].rubric"),
        )
        for i, s in enumerate(samples)
    ]


def pairs_from_proto(pairs: Sequence[judge_pool_pb2.Pair], field: str = "pairs") -> list[Pair]:
    if not pairs:
        raise invalid(field, "REQUIRED", "at least one pair is required")
    _check_ids([p.id for p in pairs], field)
    return [
        Pair(
            id=p.id,
            prompt=prompt_from_proto(p.prompt, f"{field}[{i}].prompt"),
            response_a=_text(p.response_a, f"{field}[{i}].response_a"),
            response_b=_text(p.response_b, f"{field}[{i}].response_b"),
            reference=_reference(p, f"{field}[{i}].reference"),
            rubric=_rubric(p, f"{field}[{i}].rubric"),
        )
        for i, p in enumerate(pairs)
    ]


def prompt_from_proto(messages: Sequence[common_pb2.ChatMessage], field: str) -> list[ChatMessage]:
    if not messages:
        raise invalid(field, "REQUIRED", "the prompt needs at least one message")
    turns = []
    for j, message in enumerate(messages):
        role = ROLES.get(message.role)
        if role is None:
            raise invalid(f"{field}[{j}].role", "INVALID_ROLE",
                          "must be ROLE_SYSTEM, ROLE_USER or ROLE_ASSISTANT")
        turns.append(ChatMessage(role, _text(message.content, f"{field}[{j}].content")))
    if turns[-1].role != "user":
        raise invalid(f"{field}[{len(turns) - 1}].role", "LAST_TURN_NOT_USER",
                      "the prompt must end with the user's turn")
    return turns


def score_to_proto(j: PointwiseJudgement) -> common_pb2.Score:
    return common_pb2.Score(
        sample_id=j.sample_id,
        expected_score=j.expected,
        argmax_score=j.argmax,
        distribution=[common_pb2.ScoreProbability(value=v, probability=p)
                      for v, p in j.distribution],
        score_mass=j.mass,
        reasoning=j.reasoning,
        **_stamped_fields(j),
    )


def pairwise_to_proto(j: PairwiseJudgement) -> common_pb2.PairwiseResult:
    return common_pb2.PairwiseResult(
        pair_id=j.pair_id,
        prob_a_preferred=j.p_a_preferred,
        preferred=_preference(j.preferred),
        orders=[
            common_pb2.PairwiseOrderResult(
                order=ORDERS[o.order],
                prob_a_preferred=o.p_a_preferred,
                preferred=_preference(o.preferred),
                reasoning=o.reasoning,
                valid=o.valid,
                invalid_reason=o.invalid_reason or "",
                tokens_in=o.prompt_tokens,
                tokens_out=o.completion_tokens,
            )
            for o in j.orders
        ],
        position_consistent=j.position_consistent,
        **_stamped_fields(j),
    )


def _stamped_fields(j: PointwiseJudgement | PairwiseJudgement) -> dict[str, Any]:
    """The fields Score and PairwiseResult share: judge, validity, stamp, cost."""
    return {
        "judge": j.stamp.judge,
        "valid": j.valid,
        "invalid_reason": j.invalid_reason or "",
        "template_id": j.template_id,
        "template_hash": j.template_hash,
        "judge_config_hash": j.config_hash,
        "latency": duration(j.latency_s),
        "tokens_in": j.prompt_tokens,
        "tokens_out": j.completion_tokens,
    }


def duration(seconds: float) -> Duration:
    value = Duration()
    value.FromNanoseconds(int(seconds * 1e9))
    return value


def _preference(verdict: Verdict | None) -> common_pb2.Preference:
    return PREFERENCES[verdict]


def _check_ids(ids: Sequence[str], field: str) -> None:
    seen: dict[str, int] = {}
    for i, item_id in enumerate(ids):
        if not item_id.strip():
            raise invalid(f"{field}[{i}].id", "REQUIRED", "must be a non-empty id")
        if item_id in seen:
            raise invalid(f"{field}[{i}].id", "DUPLICATE_ID",
                          f"{item_id!r} is also the id of {field}[{seen[item_id]}]")
        seen[item_id] = i


def _text(value: str, field: str) -> str:
    if not value.strip():
        raise invalid(field, "REQUIRED", "must not be empty or whitespace only")
    if len(value) > MAX_TEXT_CHARS:
        raise invalid(field, "TOO_LONG", f"{len(value)} characters; at most {MAX_TEXT_CHARS}")
    if "\x00" in value:
        raise invalid(field, "INVALID_TEXT", "must not contain NUL characters")
    return value


def _reference(item: common_pb2.Sample | judge_pool_pb2.Pair, field: str) -> str | None:
    if not item.HasField("reference"):
        return None
    return _text(item.reference, field)


def _rubric(item: common_pb2.Sample | judge_pool_pb2.Pair, field: str) -> str | None:
    if not item.HasField("rubric"):
        return None
    return _text(item.rubric, field)
