"""Blocking clients for ``JudgePool`` and ``GoldAnnotator``.

    with JudgePoolClient("judge-pool:50051") as pool:
        scores = pool.score("proxy-small", [Sample("s1", "Capital of France?", "Paris.")])

Every call has a deadline (``timeout_s``, per call or the client default) that covers its
retries; scoring and annotating are idempotent (the same input gives the same stored result),
so they are retried on UNAVAILABLE / RESOURCE_EXHAUSTED. ``score_all`` / ``annotate_all``
split a long input into requests of ``chunk_size`` with up to ``max_in_flight`` in flight and
yield results in input order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
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
from judgelab.client.retry import RetryPolicy, call_with_retries
from judgelab.client.types import Annotation, JudgeInfo, Pair, PairwiseResult, Sample, ScoreResult

T = TypeVar("T")
R = TypeVar("R")
Progress = Callable[[int], None]


class _Client:
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
        self.channel = self.config.channel()

    def _call(self, method: Any, request: Any, timeout_s: float | None, idempotent: bool) -> Any:
        metadata = self.config.metadata()
        return call_with_retries(
            lambda remaining: method(request, timeout=remaining, metadata=metadata),
            self.retry,
            idempotent=idempotent,
            timeout_s=timeout_s if timeout_s is not None else self.timeout_s,
        )

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
        request = judge_pool_pb2.ScoreRequest(
            judge=judge, samples=[sample_to_proto(s) for s in samples], experiment=experiment
        )
        response = self._call(self.stub.Score, request, timeout_s, idempotent=True)
        return [score_from_proto(s) for s in response.scores]

    def score_pairwise(
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
        response = self._call(self.stub.ScorePairwise, request, timeout_s, idempotent=True)
        return [pairwise_from_proto(r) for r in response.results]

    def list_judges(self, *, timeout_s: float | None = None) -> list[JudgeInfo]:
        response = self._call(
            self.stub.ListJudges, judge_pool_pb2.ListJudgesRequest(), timeout_s, idempotent=True
        )
        return [judge_from_proto(j) for j in response.judges]

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

    default_timeout_s = 1800.0  # gold reasoning takes minutes per batch

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
        request = gold_annotator_pb2.AnnotateRequest(
            samples=[sample_to_proto(s) for s in samples],
            experiment=experiment,
            priority=priority_to_proto(priority),
        )
        if per_sample_timeout_s is not None:
            request.per_sample_timeout.FromNanoseconds(int(per_sample_timeout_s * 1e9))
        response = self._call(self.stub.Annotate, request, timeout_s, idempotent=True)
        return [annotation_from_proto(a) for a in response.annotations]

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
