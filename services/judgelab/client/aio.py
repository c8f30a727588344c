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

from judgelab.api.v1 import gold_annotator_pb2_grpc, judge_pool_pb2_grpc
from judgelab.client import calls
from judgelab.client.batching import chunks
from judgelab.client.calls import Call, ClientSettings
from judgelab.client.channel import ChannelConfig
from judgelab.client.retry import acall_with_retries
from judgelab.client.types import Annotation, JudgeInfo, Pair, PairwiseResult, Sample, ScoreResult

T = TypeVar("T")
R = TypeVar("R")


class _AsyncClient(ClientSettings):
    stub: Any

    def __init__(self, target: str | ChannelConfig, **kwargs: Any) -> None:
        super().__init__(target, **kwargs)
        self.channel = self.config.aio_channel()

    async def _run(self, call: Call[R], timeout_s: float | None) -> R:
        send = call.attempt(self.stub, self.config.metadata())

        async def attempt(remaining: float | None) -> Any:
            return await send(remaining)

        response = await acall_with_retries(
            attempt,
            self.retry,
            idempotent=call.idempotent,
            timeout_s=self.deadline_s(timeout_s),
        )
        return call.convert(response)

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
        return await self._run(calls.score(judge, samples, experiment), timeout_s)

    async def score_pairwise(
        self,
        judge: str,
        pairs: Sequence[Pair],
        *,
        both_orders: bool = True,
        experiment: str = "",
        timeout_s: float | None = None,
    ) -> list[PairwiseResult]:
        return await self._run(
            calls.score_pairwise(judge, pairs, both_orders, experiment), timeout_s
        )

    async def list_judges(self, *, timeout_s: float | None = None) -> list[JudgeInfo]:
        return await self._run(calls.list_judges(), timeout_s)

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
    default_timeout_s = calls.GOLD_TIMEOUT_S

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
        call = calls.annotate(samples, experiment, per_sample_timeout_s, priority)
        return await self._run(call, timeout_s)

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
