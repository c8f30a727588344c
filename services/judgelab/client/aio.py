"""asyncio clients for ``JudgePool`` and ``GoldAnnotator`` (same behaviour as the sync ones).

    async with AsyncJudgePoolClient("judge-pool:50051") as pool:
        scores = await pool.score("proxy-small", samples)

Create a client inside the event loop that uses it (grpc.aio channels belong to one loop).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, TypeVar

from judgelab.api.v1 import (
    gold_annotator_pb2,
    gold_annotator_pb2_grpc,
    judge_pool_pb2,
    judge_pool_pb2_grpc,
)
from judgelab.client.batching import chunks
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
from judgelab.client.retry import RetryPolicy, acall_with_retries
from judgelab.client.types import Annotation, JudgeInfo, Pair, PairwiseResult, Sample, ScoreResult

T = TypeVar("T")
R = TypeVar("R")


class _AsyncClient:
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
        self.channel = self.config.aio_channel()

    async def _call(self, method: Any, request: Any, timeout_s: float | None) -> Any:
        metadata = self.config.metadata()

        async def attempt(remaining: float | None) -> Any:
            return await method(request, timeout=remaining, metadata=metadata)

        return await acall_with_retries(
            attempt,
            self.retry,
            idempotent=True,
            timeout_s=timeout_s if timeout_s is not None else self.timeout_s,
        )

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self: T) -> T:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.close()


async def _gather_chunks(
    items: Iterable[T],
    run: Callable[[list[T]], Awaitable[list[R]]],
    chunk_size: int,
    max_in_flight: int,
) -> list[R]:
    """Every chunk through ``run``, at most ``max_in_flight`` at once; results in order."""
    gate = asyncio.Semaphore(max_in_flight)

    async def bounded(chunk: list[T]) -> list[R]:
        async with gate:
            return await run(chunk)

    done = await asyncio.gather(*(bounded(chunk) for chunk in chunks(items, chunk_size)))
    return [result for part in done for result in part]


class AsyncJudgePoolClient(_AsyncClient):
    def __init__(self, target: str | ChannelConfig, **kwargs: Any) -> None:
        super().__init__(target, **kwargs)
        self.stub = judge_pool_pb2_grpc.JudgePoolStub(self.channel)

    async def score(
        self,
        judge: str,
        samples: Sequence[Sample],
        *,
        experiment: str = "",
        timeout_s: float | None = None,
    ) -> list[ScoreResult]:
        request = judge_pool_pb2.ScoreRequest(
            judge=judge, samples=[sample_to_proto(s) for s in samples], experiment=experiment
        )
        response = await self._call(self.stub.Score, request, timeout_s)
        return [score_from_proto(s) for s in response.scores]

    async def score_pairwise(
        self,
        judge: str,
        pairs: Sequence[Pair],
        *,
        both_orders: bool = True,
        experiment: str = "",
        timeout_s: float | None = None,
    ) -> list[PairwiseResult]:
        request = judge_pool_pb2.ScorePairwiseRequest(
            judge=judge,
            pairs=[pair_to_proto(p) for p in pairs],
            both_orders=both_orders,
            experiment=experiment,
        )
        response = await self._call(self.stub.ScorePairwise, request, timeout_s)
        return [pairwise_from_proto(r) for r in response.results]

    async def list_judges(self, *, timeout_s: float | None = None) -> list[JudgeInfo]:
        response = await self._call(
            self.stub.ListJudges, judge_pool_pb2.ListJudgesRequest(), timeout_s
        )
        return [judge_from_proto(j) for j in response.judges]

    async def score_all(
        self,
        judge: str,
        samples: Iterable[Sample],
        *,
        chunk_size: int = 32,
        max_in_flight: int = 4,
        experiment: str = "",
    ) -> list[ScoreResult]:
        async def run(chunk: list[Sample]) -> list[ScoreResult]:
            return await self.score(judge, chunk, experiment=experiment)

        return await _gather_chunks(samples, run, chunk_size, max_in_flight)


class AsyncGoldAnnotatorClient(_AsyncClient):
    default_timeout_s = 1800.0

    def __init__(self, target: str | ChannelConfig, **kwargs: Any) -> None:
        super().__init__(target, **kwargs)
        self.stub = gold_annotator_pb2_grpc.GoldAnnotatorStub(self.channel)

    async def annotate(
        self,
        samples: Sequence[Sample],
        *,
        experiment: str = "",
        per_sample_timeout_s: float | None = None,
        priority: str = "normal",
        timeout_s: float | None = None,
    ) -> list[Annotation]:
        request = gold_annotator_pb2.AnnotateRequest(
            samples=[sample_to_proto(s) for s in samples],
            experiment=experiment,
            priority=priority_to_proto(priority),
        )
        if per_sample_timeout_s is not None:
            request.per_sample_timeout.FromNanoseconds(int(per_sample_timeout_s * 1e9))
        response = await self._call(self.stub.Annotate, request, timeout_s)
        return [annotation_from_proto(a) for a in response.annotations]

    async def annotate_all(
        self,
        samples: Iterable[Sample],
        *,
        chunk_size: int = 16,
        max_in_flight: int = 2,
        experiment: str = "",
    ) -> list[Annotation]:
        async def run(chunk: list[Sample]) -> list[Annotation]:
            return await self.annotate(chunk, experiment=experiment)

        return await _gather_chunks(samples, run, chunk_size, max_in_flight)
