"""What the blocking and asyncio clients share: settings, and one request + conversion per RPC.

Each RPC is a :class:`Call`: the stub method's name, the request message and how to turn the
response into client types. ``sync`` and ``aio`` only differ in how they send it (a blocking
call on threads, or an awaited call on the event loop); the retry decisions are
``retry.Attempts`` for both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from google.protobuf.message import Message

from judgelab.api.v1 import gold_annotator_pb2, judge_pool_pb2
from judgelab.client.channel import ChannelConfig, as_config
from judgelab.client.convert import (
    annotation_from_proto,
    judge_from_proto,
    pair_to_proto,
    pairwise_from_proto,
    sample_to_proto,
    score_from_proto,
)
from judgelab.client.priority import priority_to_proto
from judgelab.client.retry import RetryPolicy
from judgelab.client.types import Annotation, JudgeInfo, Pair, PairwiseResult, Sample, ScoreResult

Out = TypeVar("Out")
Metadata = tuple[tuple[str, str], ...]
GOLD_TIMEOUT_S = 1800.0  # gold reasoning takes minutes per batch


class ClientSettings:
    """Channel configuration, default deadline and retry policy of one client."""

    default_timeout_s = 60.0

    def __init__(
        self,
        target: str | ChannelConfig,
        *,
        timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.config = as_config(target)
        self.timeout_s = timeout_s if timeout_s is not None else self.default_timeout_s
        self.retry = retry or RetryPolicy()

    def deadline_s(self, timeout_s: float | None) -> float:
        """The deadline of one call (covering its retries): the call's own, else the default."""
        return timeout_s if timeout_s is not None else self.timeout_s


@dataclass(frozen=True)
class Call(Generic[Out]):
    """One RPC to send: ``getattr(stub, rpc)(request)``, its response through ``convert``.

    Every call here is idempotent (the same input gives the same stored result), so all of
    them may be retried.
    """

    rpc: str
    request: Message
    convert: Callable[[Any], Out]
    idempotent: bool = True

    def attempt(self, stub: Any, metadata: Metadata) -> Callable[[float | None], Any]:
        """One try: the stub's method called with the time left as its timeout."""
        method = getattr(stub, self.rpc)
        return lambda remaining: method(self.request, timeout=remaining, metadata=metadata)


def score(judge: str, samples: Sequence[Sample], experiment: str) -> Call[list[ScoreResult]]:
    request = judge_pool_pb2.ScoreRequest(
        judge=judge, samples=[sample_to_proto(s) for s in samples], experiment=experiment
    )
    return Call("Score", request, lambda response: [score_from_proto(s) for s in response.scores])


def score_pairwise(
    judge: str, pairs: Sequence[Pair], both_orders: bool, experiment: str
) -> Call[list[PairwiseResult]]:
    request = judge_pool_pb2.ScorePairwiseRequest(
        judge=judge,
        pairs=[pair_to_proto(p) for p in pairs],
        both_orders=both_orders,
        experiment=experiment,
    )
    return Call(
        "ScorePairwise",
        request,
        lambda response: [pairwise_from_proto(r) for r in response.results],
    )


def list_judges() -> Call[list[JudgeInfo]]:
    return Call(
        "ListJudges",
        judge_pool_pb2.ListJudgesRequest(),
        lambda response: [judge_from_proto(j) for j in response.judges],
    )


def annotate(
    samples: Sequence[Sample],
    experiment: str,
    per_sample_timeout_s: float | None,
    priority: str,
) -> Call[list[Annotation]]:
    request = gold_annotator_pb2.AnnotateRequest(
        samples=[sample_to_proto(s) for s in samples],
        experiment=experiment,
        priority=priority_to_proto(priority),
    )
    if per_sample_timeout_s is not None:
        request.per_sample_timeout.FromNanoseconds(int(per_sample_timeout_s * 1e9))
    return Call(
        "Annotate",
        request,
        lambda response: [annotation_from_proto(a) for a in response.annotations],
    )
