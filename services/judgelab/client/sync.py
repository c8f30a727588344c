"""Blocking clients for ``JudgePool`` and ``GoldAnnotator``.

    with JudgePoolClient("judge-pool:50051") as pool:
        scores = pool.score("proxy-small", [Sample("s1", "Capital of France?", "Paris.")])

Every call has a deadline (``timeout_s``, per call or the client default) that covers its
retries; scoring and annotating are idempotent (the same input gives the same stored result),
so they are retried on UNAVAILABLE / RESOURCE_EXHAUSTED. ``score_all`` / ``annotate_all``
split a long input into requests of ``chunk_size`` with up to ``max_in_flight`` in flight and
yield results in input order. Requests and conversions live in :mod:`judgelab.client.calls`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any, TypeVar

from judgelab.api.v1 import gold_annotator_pb2_grpc, judge_pool_pb2_grpc
from judgelab.client import calls
from judgelab.client.batching import chunks
from judgelab.client.calls import Call, ClientSettings
from judgelab.client.channel import ChannelConfig
from judgelab.client.retry import call_with_retries
from judgelab.client.types import Annotation, JudgeInfo, Pair, PairwiseResult, Sample, ScoreResult

T = TypeVar("T")
R = TypeVar("R")
Progress = Callable[[int], None]


class _Client(ClientSettings):
    stub: Any

    def __init__(self, target: str | ChannelConfig, **kwargs: Any) -> None:
        super().__init__(target, **kwargs)
        self.channel = self.config.channel()

    def _run(self, call: Call[R], timeout_s: float | None) -> R:
        response = call_with_retries(
            call.attempt(self.stub, self.config.metadata()),
            self.retry,
            idempotent=call.idempotent,
            timeout_s=self.deadline_s(timeout_s),
        )
        return call.convert(response)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self: T) -> T:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


def _in_order(
    items: Iterable[T],
    run: Callable[[list[T]], list[R]],
    chunk_size: int,
    max_in_flight: int,
    on_progress: Progress | None,
) -> Iterator[R]:
    """Run chunks on threads, at most ``max_in_flight`` at once; yield results in order."""
    with ThreadPoolExecutor(max_workers=max_in_flight, thread_name_prefix="judgelab") as pool:
        window: deque[Future[list[R]]] = deque()
        for chunk in chunks(items, chunk_size):
            if len(window) >= max_in_flight:
                yield from _drain_one(window, on_progress)
            window.append(pool.submit(run, chunk))
        while window:
            yield from _drain_one(window, on_progress)


def _drain_one(window: deque[Future[list[R]]], on_progress: Progress | None) -> Iterator[R]:
    results = window.popleft().result()
    if on_progress is not None:
        on_progress(len(results))
    yield from results


class JudgePoolClient(_Client):
    """``judgelab.v1.JudgePool``: score samples and pairs with named judges."""

    def __init__(self, target: str | ChannelConfig, **kwargs: Any) -> None:
        super().__init__(target, **kwargs)
        self.stub = judge_pool_pb2_grpc.JudgePoolStub(self.channel)

    def score(
        self,
        judge: str,
        samples: Sequence[Sample],
        *,
        experiment: str = "",
        timeout_s: float | None = None,
    ) -> list[ScoreResult]:
        return self._run(calls.score(judge, samples, experiment), timeout_s)

    def score_pairwise(
        self,
        judge: str,
        pairs: Sequence[Pair],
        *,
        both_orders: bool = True,
        experiment: str = "",
        timeout_s: float | None = None,
    ) -> list[PairwiseResult]:
        return self._run(calls.score_pairwise(judge, pairs, both_orders, experiment), timeout_s)

    def list_judges(self, *, timeout_s: float | None = None) -> list[JudgeInfo]:
        return self._run(calls.list_judges(), timeout_s)

    def score_all(
        self,
        judge: str,
        samples: Iterable[Sample],
        *,
        chunk_size: int = 32,
        max_in_flight: int = 2,
        experiment: str = "",
        on_progress: Progress | None = None,
    ) -> Iterator[ScoreResult]:
        """Score any number of samples in requests of ``chunk_size``; results in input order."""
        return _in_order(
            samples,
            lambda chunk: self.score(judge, chunk, experiment=experiment),
            chunk_size,
            max_in_flight,
            on_progress,
        )


class GoldAnnotatorClient(_Client):
    """``judgelab.v1.GoldAnnotator``: gold judgements, cached server-side."""

    default_timeout_s = calls.GOLD_TIMEOUT_S

    def __init__(self, target: str | ChannelConfig, **kwargs: Any) -> None:
        super().__init__(target, **kwargs)
        self.stub = gold_annotator_pb2_grpc.GoldAnnotatorStub(self.channel)

    def annotate(
        self,
        samples: Sequence[Sample],
        *,
        experiment: str = "",
        per_sample_timeout_s: float | None = None,
        priority: str = "normal",
        timeout_s: float | None = None,
    ) -> list[Annotation]:
        call = calls.annotate(samples, experiment, per_sample_timeout_s, priority)
        return self._run(call, timeout_s)

    def annotate_all(
        self,
        samples: Iterable[Sample],
        *,
        chunk_size: int = 16,
        max_in_flight: int = 2,
        experiment: str = "",
        on_progress: Progress | None = None,
    ) -> Iterator[Annotation]:
        return _in_order(
            samples,
            lambda chunk: self.annotate(chunk, experiment=experiment),
            chunk_size,
            max_in_flight,
            on_progress,
        )


__all__ = ["GoldAnnotatorClient", "JudgePoolClient"]
