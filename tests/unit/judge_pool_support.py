"""Shared pieces of the judge pool tests: a gated engine, pools, a running server, a client."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import grpc

from judgelab.api.v1 import common_pb2, judge_pool_pb2, judge_pool_pb2_grpc
from judgelab.engines.base import CandidateScores, Conversation
from judgelab.engines.constant import ConstantEngine
from judgelab.judge_pool.pool import JudgePool
from judgelab.judge_pool.server import start_judge_pool_server
from judgelab.judging import JudgeConfig, PairwiseJudge, PointwiseJudge
from judgelab.serving.metrics import ServiceMetrics
from judgelab.serving.server import GrpcServer

PLAIN = JudgeConfig(name="plain", model="constant")
PAIRS = JudgeConfig(name="pairs", model="constant", protocol="pairwise")
GUIDED = JudgeConfig(name="guided", model="constant", reference_guided=True)


class GatedEngine(ConstantEngine):
    """A constant engine whose scoring waits for ``gate`` and records batch sizes."""

    def __init__(self, context_length: int = 8192) -> None:
        super().__init__(context_length=context_length)
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.batch_sizes: list[int] = []

    def score_candidates(
        self, conversations: Sequence[Conversation], candidates: Sequence[str],
        assistant_prefix: str = "",
    ) -> list[CandidateScores]:
        self.batch_sizes.append(len(conversations))
        self.entered.set()
        self.gate.wait(timeout=30)
        return super().score_candidates(conversations, candidates, assistant_prefix)


def constant_pool(
    engine: ConstantEngine | None = None, *, max_batch: int = 8, max_queue: int = 64,
    metrics: ServiceMetrics | None = None,
) -> JudgePool:
    engine = engine or ConstantEngine()
    pool = JudgePool(metrics=metrics)
    pool.add("plain", PointwiseJudge(engine, PLAIN), max_batch=max_batch, max_queue=max_queue)
    pool.add("pairs", PairwiseJudge(engine, PAIRS), max_batch=max_batch, max_queue=max_queue)
    pool.add("guided", PointwiseJudge(engine, GUIDED), max_batch=max_batch, max_queue=max_queue)
    return pool


@dataclass
class Running:
    pool: JudgePool
    server: GrpcServer
    channel: grpc.Channel
    stub: judge_pool_pb2_grpc.JudgePoolStub


@contextmanager
def running(pool: JudgePool) -> Iterator[Running]:
    server = start_judge_pool_server(pool)
    channel = grpc.insecure_channel(server.address)
    try:
        yield Running(pool, server, channel, judge_pool_pb2_grpc.JudgePoolStub(channel))
    finally:
        channel.close()
        server.stop(grace_s=5)
        pool.close()


def sample(sample_id: str = "s0", response: str = "Paris.", prompt: str = "Capital of France?",
           reference: str | None = None) -> common_pb2.Sample:
    message = common_pb2.Sample(
        id=sample_id,
        prompt=[common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=prompt)],
        response=response,
    )
    if reference is not None:
        message.reference = reference
    return message


def score_request(judge: str = "plain", n: int = 1, **kwargs: str) -> judge_pool_pb2.ScoreRequest:
    return judge_pool_pb2.ScoreRequest(
        judge=judge, samples=[sample(f"s{i}", **kwargs) for i in range(n)]
    )
