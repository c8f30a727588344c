"""Many named judges behind one interface: validated, micro-batched, deadline-bound.

The gRPC servicer and the Redis-stream worker both call this core, so a judgement is the same
whichever way it was asked for. Each judge has its own :class:`MicroBatcher` (its engine runs
one batch at a time); judges on the same model share one engine, whose lock serialises them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from concurrent.futures import Future
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from judgelab.engines.base import ChatMessage
from judgelab.judging.config import FINAL_LINE_TOKENS
from judgelab.judging.pairwise import PairwiseJudge
from judgelab.judging.pointwise import PointwiseJudge
from judgelab.judging.results import PairwiseJudgement, PointwiseJudgement
from judgelab.judging.samples import Pair, Sample
from judgelab.serving.batcher import MicroBatcher
from judgelab.serving.errors import DeadlineExceeded, FailedPrecondition, Problem, invalid
from judgelab.serving.metrics import ServiceMetrics

R = TypeVar("R")
#: A pair and whether to judge it in both orders.
PairJob = tuple[Pair, bool]


@dataclass
class JudgeStats:
    judged: int = 0
    invalid: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    latency_s: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, rows: Sequence[PointwiseJudgement | PairwiseJudgement]) -> None:
        with self._lock:
            self.judged += len(rows)
            self.invalid += sum(not row.valid for row in rows)
            self.tokens_in += sum(row.prompt_tokens for row in rows)
            self.tokens_out += sum(row.completion_tokens for row in rows)
            self.latency_s += sum(row.latency_s for row in rows)

    @property
    def mean_latency_s(self) -> float:
        return self.latency_s / self.judged if self.judged else 0.0


@dataclass
class PoolJudge:
    """One named judge: the judge itself, its batcher and its running totals."""

    name: str
    judge: PointwiseJudge | PairwiseJudge
    batcher: MicroBatcher[Sample, PointwiseJudgement] | MicroBatcher[PairJob, PairwiseJudgement]
    stats: JudgeStats

    @property
    def protocol(self) -> str:
        return self.judge.config.protocol


class JudgePool:
    """Named judges; ``score``/``score_pairwise`` block until done or the deadline passes."""

    def __init__(self, metrics: ServiceMetrics | None = None) -> None:
        self.metrics = metrics
        self._judges: dict[str, PoolJudge] = {}

    # -- set-up -----------------------------------------------------------------------
    def add(
        self,
        name: str,
        judge: PointwiseJudge | PairwiseJudge,
        *,
        max_batch: int,
        max_wait_s: float = 0.0,
        max_queue: int = 1024,
    ) -> None:
        if name in self._judges:
            raise ValueError(f"judge {name!r} is already in the pool")
        stats = JudgeStats()
        on_batch = self._batch_recorder(name)
        batcher: MicroBatcher[Sample, PointwiseJudgement] | MicroBatcher[PairJob, PairwiseJudgement]
        if isinstance(judge, PointwiseJudge):
            batcher = MicroBatcher(name, self._pointwise_runner(name, judge, stats),
                                   max_batch=max_batch, max_wait_s=max_wait_s,
                                   max_queue=max_queue, on_batch=on_batch)
        else:
            batcher = MicroBatcher(name, self._pairwise_runner(name, judge, stats),
                                   max_batch=max_batch, max_wait_s=max_wait_s,
                                   max_queue=max_queue, on_batch=on_batch)
        self._judges[name] = PoolJudge(name, judge, batcher, stats)

    @property
    def judges(self) -> list[PoolJudge]:
        return list(self._judges.values())

    @contextmanager
    def held(self) -> Iterator[None]:
        """Every judge's batcher held (see ``MicroBatcher.held``): requests submitted inside
        are batched together."""
        with ExitStack() as stack:
            for entry in self._judges.values():
                stack.enter_context(entry.batcher.held())
            yield

    def close(self, drain: bool = True) -> None:
        for entry in self._judges.values():
            entry.batcher.close(drain=drain)

    # -- judging ----------------------------------------------------------------------
    def submit_score(
        self, name: str, samples: Sequence[Sample], deadline: float | None = None
    ) -> list[Future[PointwiseJudgement]]:
        entry = self.get(name)
        judge = entry.judge
        if not isinstance(judge, PointwiseJudge):
            raise _wrong_protocol(name, "pairwise", "ScorePairwise")
        conversations = [self._checked(judge, "samples", i, s) for i, s in enumerate(samples)]
        self._check_lengths(entry, conversations, "samples", "response")
        batcher: MicroBatcher[Sample, PointwiseJudgement] = entry.batcher  # type: ignore[assignment]
        return batcher.submit(samples, deadline)

    def submit_pairwise(
        self, name: str, pairs: Sequence[Pair], both_orders: bool, deadline: float | None = None
    ) -> list[Future[PairwiseJudgement]]:
        entry = self.get(name)
        judge = entry.judge
        if not isinstance(judge, PairwiseJudge):
            raise _wrong_protocol(name, "pointwise", "Score")
        conversations = [self._checked(judge, "pairs", i, p) for i, p in enumerate(pairs)]
        self._check_lengths(entry, conversations, "pairs", "response_b")
        batcher: MicroBatcher[PairJob, PairwiseJudgement] = entry.batcher  # type: ignore[assignment]
        return batcher.submit([(pair, both_orders) for pair in pairs], deadline)

    def score(
        self, name: str, samples: Sequence[Sample], deadline: float | None = None
    ) -> list[PointwiseJudgement]:
        return gather(self.submit_score(name, samples, deadline), deadline)

    def score_pairwise(
        self, name: str, pairs: Sequence[Pair], both_orders: bool = True,
        deadline: float | None = None,
    ) -> list[PairwiseJudgement]:
        return gather(self.submit_pairwise(name, pairs, both_orders, deadline), deadline)

    def get(self, name: str) -> PoolJudge:
        entry = self._judges.get(name)
        if entry is None:
            known = ", ".join(sorted(self._judges)) or "none"
            raise invalid("judge", "UNKNOWN_JUDGE", f"no judge named {name!r} (judges: {known})")
        return entry

    # -- internals --------------------------------------------------------------------
    def _checked(
        self, judge: PointwiseJudge | PairwiseJudge, field: str, index: int, item: Sample | Pair
    ) -> list[ChatMessage]:
        if judge.config.reference_guided and item.reference is None:
            raise invalid(f"{field}[{index}].reference", "REQUIRED",
                          f"judge {judge.config.name!r} is reference-guided: give a reference")
        if judge.config.gold_rubric and not (item.rubric or "").strip():
            raise invalid(f"{field}[{index}].rubric", "REQUIRED",
                          f"judge {judge.config.name!r} is shown the gold judge's per-prompt "
                          f"rubric: give the prompt's rubric (item {item.id!r})")
        if isinstance(judge, PointwiseJudge):
            assert isinstance(item, Sample)
            return judge.conversation(item)
        assert isinstance(item, Pair)
        return judge.conversation(item, "AB")

    def oversized(self, name: str, samples: Sequence[Sample]) -> dict[int, str]:
        """Index -> why, for each sample whose judge prompt does not fit judge ``name``."""
        entry = self.get(name)
        judge = entry.judge
        if not isinstance(judge, PointwiseJudge):
            raise _wrong_protocol(name, "pairwise", "ScorePairwise")
        conversations = [self._checked(judge, "samples", i, s) for i, s in enumerate(samples)]
        return dict(self._too_long(entry, conversations))

    def _check_lengths(
        self, entry: PoolJudge, conversations: list[list[ChatMessage]], field: str,
        text_field: str,
    ) -> None:
        for i, why in self._too_long(entry, conversations):
            raise invalid(f"{field}[{i}].{text_field}", "TOO_LONG", why)

    def _too_long(
        self, entry: PoolJudge, conversations: list[list[ChatMessage]]
    ) -> Iterator[tuple[int, str]]:
        engine = entry.judge.engine
        room = engine.context_length - _completion_tokens(entry.judge)
        for i, conversation in enumerate(conversations):
            tokens = engine.count_tokens(conversation)
            if tokens > room:
                yield i, (
                    f"the judge prompt is {tokens} tokens; judge {entry.name!r} has room for "
                    f"{room} ({engine.context_length} context minus its answer); shorten the "
                    "prompt or response"
                )

    def _pointwise_runner(
        self, name: str, judge: PointwiseJudge, stats: JudgeStats
    ) -> Callable[[list[Sample]], list[PointwiseJudgement]]:
        def run(batch: list[Sample]) -> list[PointwiseJudgement]:
            results = judge.judge(batch)
            stats.add(results)
            if self.metrics is not None:
                self.metrics.record_pointwise(name, results)
            return results

        return run

    def _pairwise_runner(
        self, name: str, judge: PairwiseJudge, stats: JudgeStats
    ) -> Callable[[list[PairJob]], list[PairwiseJudgement]]:
        def run(batch: list[PairJob]) -> list[PairwiseJudgement]:
            results: dict[int, PairwiseJudgement] = {}
            for both in (True, False):
                rows = [i for i, (_, b) in enumerate(batch) if b is both]
                judged = judge.judge([batch[i][0] for i in rows], both_orders=both)
                results.update(zip(rows, judged, strict=True))
            ordered = [results[i] for i in range(len(batch))]
            stats.add(ordered)
            if self.metrics is not None:
                self.metrics.record_pairwise(name, ordered)
            return ordered

        return run

    def _batch_recorder(self, name: str) -> Callable[[int, float], None] | None:
        metrics = self.metrics
        if metrics is None:
            return None

        def record(size: int, seconds: float) -> None:
            metrics.record_batch(name, size, seconds)
            metrics.queue_length.labels(**metrics.labels(judge=name)).set(
                self._judges[name].batcher.queue_length
            )

        return record


def gather(pending: Sequence[Future[R]], deadline: float | None) -> list[R]:
    """Results in order; past ``deadline`` the unfinished ones are cancelled and it raises."""
    timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
    _, not_done = futures.wait(pending, timeout=timeout)
    if not_done:
        for future in not_done:
            future.cancel()
        raise DeadlineExceeded(
            Problem("", "DEADLINE_EXCEEDED",
                    f"{len(not_done)} of {len(pending)} items were not judged in time")
        )
    return [future.result() for future in pending]


def _completion_tokens(judge: PointwiseJudge | PairwiseJudge) -> int:
    """Tokens the judge's answer needs after the prompt (its limit, or room for a verdict)."""
    limit = judge.config.generation_limit
    if limit is not None:
        return limit
    return FINAL_LINE_TOKENS if judge.config.reasoning else 4


def _wrong_protocol(name: str, protocol: str, method: str) -> FailedPrecondition:
    return FailedPrecondition(
        Problem("judge", "WRONG_PROTOCOL", f"judge {name!r} is {protocol}; call {method}")
    )
