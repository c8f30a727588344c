"""The two scorers of the in-loop gold evaluation, over gRPC: the gold annotator and the arm's
proxy judge in the judge pool. Both take (prompt, response, reference) items, one score each.
TLS and the bearer token come from the ``JUDGELAB_CLIENT_*`` variables (``judgelab.client``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import grpc

from judgelab.api.v1 import (
    common_pb2,
    gold_annotator_pb2,
    gold_annotator_pb2_grpc,
    judge_pool_pb2,
    judge_pool_pb2_grpc,
)
from judgelab.client.channel import ChannelConfig, access_hint, config_from_env
from judgelab.engines.base import ChatMessage

ROLES = {
    "system": common_pb2.ROLE_SYSTEM,
    "user": common_pb2.ROLE_USER,
    "assistant": common_pb2.ROLE_ASSISTANT,
}
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})
T = TypeVar("T")


@dataclass(frozen=True)
class EvalItem:
    """One policy sample to score."""

    id: str
    prompt: str | list[ChatMessage]
    response: str
    reference: str | None = None
    rubric: str | None = None


def to_proto(item: EvalItem) -> common_pb2.Sample:
    turns = (
        [ChatMessage("user", item.prompt)] if isinstance(item.prompt, str) else list(item.prompt)
    )
    sample = common_pb2.Sample(
        id=item.id,
        prompt=[common_pb2.ChatMessage(role=ROLES[t.role], content=t.content) for t in turns],
        response=item.response,
    )
    if item.reference is not None:
        sample.reference = item.reference
    if item.rubric is not None:
        sample.rubric = item.rubric
    return sample


class GrpcScorer:
    """A channel to one service with retries of transient failures (restarts, a full queue)."""

    def __init__(
        self, address: str | ChannelConfig, *, timeout_s: float = 900.0, retries: int = 5
    ) -> None:
        self.config = config_from_env(address)
        self.address = self.config.address
        self.timeout_s = timeout_s
        self.retries = retries
        self.channel = self.config.channel()

    def close(self) -> None:
        self.channel.close()

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        return self.config.metadata()

    def _call(self, call: Callable[[], T]) -> T:
        for attempt in range(self.retries + 1):
            try:
                return call()
            except grpc.RpcError as error:
                if error.code() not in RETRYABLE or attempt == self.retries:
                    code = error.code()
                    raise RuntimeError(
                        f"{self.address}: {code.name}: {error.details()}"
                        f"{access_hint(code, self.config)}"
                    ) from error
                time.sleep(min(30.0, 2.0**attempt))
        raise AssertionError("unreachable")


class GoldScorer(GrpcScorer):
    """``GoldAnnotator.Annotate`` (high priority: training waits for it); None where invalid."""

    def __init__(
        self, address: str | ChannelConfig, experiment: str, *, timeout_s: float = 900.0
    ) -> None:
        super().__init__(address, timeout_s=timeout_s)
        self.experiment = experiment
        self.stub = gold_annotator_pb2_grpc.GoldAnnotatorStub(self.channel)

    def score(self, items: Sequence[EvalItem]) -> list[float | None]:
        if not items:
            return []
        request = gold_annotator_pb2.AnnotateRequest(
            samples=[to_proto(i) for i in items],
            experiment=self.experiment,
            priority=gold_annotator_pb2.PRIORITY_HIGH,
        )
        reply = self._call(
            lambda: self.stub.Annotate(request, timeout=self.timeout_s, metadata=self._metadata())
        )
        by_id = {a.score.sample_id: a.score for a in reply.annotations}
        return [_value(by_id.get(i.id)) for i in items]


class JudgeScorer(GrpcScorer):
    """``JudgePool.Score`` with the arm's judge: the expected score, 0 where invalid (as the
    reward the policy is trained on)."""

    def __init__(
        self,
        address: str | ChannelConfig,
        judge: str,
        experiment: str,
        *,
        timeout_s: float = 900.0,
    ) -> None:
        super().__init__(address, timeout_s=timeout_s)
        self.judge = judge
        self.experiment = experiment
        self.stub = judge_pool_pb2_grpc.JudgePoolStub(self.channel)

    def score(self, items: Sequence[EvalItem]) -> list[float | None]:
        if not items:
            return []
        request = judge_pool_pb2.ScoreRequest(
            judge=self.judge, samples=[to_proto(i) for i in items], experiment=self.experiment
        )
        reply = self._call(
            lambda: self.stub.Score(request, timeout=self.timeout_s, metadata=self._metadata())
        )
        by_id = {s.sample_id: s for s in reply.scores}
        return [float(by_id[i.id].expected_score) if i.id in by_id else None for i in items]


def _value(score: common_pb2.Score | None) -> float | None:
    if score is None or not score.valid:
        return None
    return float(score.expected_score)
