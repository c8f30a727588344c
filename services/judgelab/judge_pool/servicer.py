"""gRPC `judgelab.v1.JudgePool` over a :class:`JudgePool`."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

import grpc

from judgelab.api.v1 import common_pb2, judge_pool_pb2, judge_pool_pb2_grpc
from judgelab.judge_pool.pool import JudgePool, PoolJudge, gather
from judgelab.serving.convert import (
    duration,
    pairs_from_proto,
    pairwise_to_proto,
    samples_from_proto,
    score_to_proto,
)
from judgelab.serving.deadline import request_deadline
from judgelab.serving.errors import invalid

PROTOCOLS = {"pointwise": common_pb2.PROTOCOL_POINTWISE, "pairwise": common_pb2.PROTOCOL_PAIRWISE}


class JudgePoolServicer(judge_pool_pb2_grpc.JudgePoolServicer):
    def __init__(self, pool: JudgePool) -> None:
        self.pool = pool

    def Score(  # noqa: N802 - gRPC method name
        self, request: judge_pool_pb2.ScoreRequest, context: grpc.ServicerContext
    ) -> judge_pool_pb2.ScoreResponse:
        deadline = request_deadline(context)
        name = _judge_name(request.judge)
        samples = samples_from_proto(request.samples)
        pending = self.pool.submit_score(name, samples, deadline)
        cancel_when_gone(context, pending)
        scores = gather(pending, deadline)
        return judge_pool_pb2.ScoreResponse(scores=[score_to_proto(s) for s in scores])

    def ScorePairwise(  # noqa: N802
        self, request: judge_pool_pb2.ScorePairwiseRequest, context: grpc.ServicerContext
    ) -> judge_pool_pb2.ScorePairwiseResponse:
        deadline = request_deadline(context)
        name = _judge_name(request.judge)
        pairs = pairs_from_proto(request.pairs)
        pending = self.pool.submit_pairwise(name, pairs, request.both_orders, deadline)
        cancel_when_gone(context, pending)
        results = gather(pending, deadline)
        return judge_pool_pb2.ScorePairwiseResponse(
            results=[pairwise_to_proto(r) for r in results]
        )

    def ListJudges(  # noqa: N802
        self, request: judge_pool_pb2.ListJudgesRequest, context: grpc.ServicerContext
    ) -> judge_pool_pb2.ListJudgesResponse:
        return judge_pool_pb2.ListJudgesResponse(judges=[judge_info(j) for j in self.pool.judges])


def judge_info(entry: PoolJudge) -> judge_pool_pb2.JudgeInfo:
    config = entry.judge.config
    stats = entry.stats
    return judge_pool_pb2.JudgeInfo(
        spec=common_pb2.JudgeSpec(
            name=entry.name,
            protocol=PROTOCOLS[config.protocol],
            reasoning=config.reasoning,
            reference_guided=config.reference_guided,
            scale_min=config.scale.min,
            scale_max=config.scale.max,
            template_id=config.template_id,
            rubric=config.rubric_source if config.rubric else "",
        ),
        model=config.model,
        ready=True,
        stats=judge_pool_pb2.JudgeStats(
            judged_total=stats.judged,
            invalid_total=stats.invalid,
            tokens_in_total=stats.tokens_in,
            tokens_out_total=stats.tokens_out,
            mean_latency=duration(stats.mean_latency_s),
        ),
    )


def cancel_when_gone(context: grpc.ServicerContext, pending: Sequence[Future[Any]]) -> None:
    """A caller that hangs up frees its queued items (the model never sees them)."""

    def cancel() -> None:
        for future in pending:
            future.cancel()

    context.add_callback(cancel)


def _judge_name(name: str) -> str:
    if not name:
        raise invalid("judge", "REQUIRED", "name the judge (ListJudges lists them)")
    return name
