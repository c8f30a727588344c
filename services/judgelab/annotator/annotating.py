"""One request in progress: its cache hits, its queued model work, and waiting for both.

Waiting honours two limits. The request's deadline fails the whole call (DeadlineExceeded).
The per-sample timeout starts when the sample's batch starts running (queueing excluded, as
the gold model may work through many batches of a large request); a sample past it comes back
as an invalid ``engine_error`` judgement, which is never cached.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace

import grpc

from judgelab.judging import PointwiseJudgement, Sample, Stamp
from judgelab.serving.errors import DeadlineExceeded, Problem, ServiceError


class Cancelled(ServiceError):
    """The caller went away; nothing is left to answer."""

    code = grpc.StatusCode.CANCELLED


def cancelled(message: str) -> Cancelled:
    return Cancelled(Problem("", "CANCELLED", message))


@dataclass(frozen=True)
class AnnotationResult:
    """A gold judgement and whether it came from the cache instead of the model."""

    judgement: PointwiseJudgement
    cached: bool


@dataclass(eq=False)
class Job:
    """One distinct sample of a request sent to the model; ``started``: when its batch ran."""

    key: str
    sample: Sample
    deadline: float | None
    started: float | None = None


@dataclass(eq=False)
class Waiting:
    """A job's future and every request index it answers (duplicates are judged once)."""

    job: Job
    future: Future[PointwiseJudgement]
    indices: list[int] = field(default_factory=list)


class Annotating:
    """Iterate :meth:`as_completed`, or call :meth:`results` for request order."""

    def __init__(
        self,
        samples: Sequence[Sample],
        hits: dict[int, AnnotationResult],
        waiting: list[Waiting],
        *,
        progress: threading.Condition,
        deadline: float | None,
        per_sample_timeout_s: float,
        stamp: Stamp,
        release: Callable[[Waiting], bool] | None = None,
    ) -> None:
        self.samples = samples
        self._hits = hits
        self._pending = waiting
        self._progress = progress
        self._deadline = deadline
        self._timeout = per_sample_timeout_s
        self._stamp = stamp
        self._release = release
        self._cancelled = False

    def as_completed(self) -> Iterator[tuple[int, AnnotationResult]]:
        """``(request index, result)`` as each is ready: cache hits first."""
        yield from sorted(self._hits.items())
        while self._pending and not self._cancelled:
            for entry, judgement in self._next_ready():
                for index in entry.indices:
                    sample_id = self.samples[index].id
                    yield index, AnnotationResult(replace(judgement, sample_id=sample_id), False)

    def results(self) -> list[AnnotationResult]:
        """Every result in request order (waits for all)."""
        found = dict(self.as_completed())
        if self._cancelled:
            raise cancelled("the request was cancelled")
        return [found[i] for i in range(len(self.samples))]

    def cancel(self) -> None:
        """Stop waiting; queued work not yet started is dropped unless another request waits
        for it too, running work still lands in the cache."""
        with self._progress:
            self._cancelled = True
            for entry in self._pending:
                if self._release is None or self._release(entry):
                    entry.future.cancel()
            self._progress.notify_all()

    def _next_ready(self) -> list[tuple[Waiting, PointwiseJudgement]]:
        with self._progress:
            while not self._cancelled:
                now = time.monotonic()
                ready = [(e, j) for e in self._pending if (j := self._outcome(e, now)) is not None]
                if ready:
                    done = {id(e) for e, _ in ready}
                    self._pending = [e for e in self._pending if id(e) not in done]
                    return ready
                if self._deadline is not None and now >= self._deadline:
                    raise _deadline_exceeded(len(self._pending))
                self._progress.wait(self._wake_in(now))
            return []

    def _outcome(self, entry: Waiting, now: float) -> PointwiseJudgement | None:
        if entry.future.done():
            # A failed batch (deadline passed in queue, rate limit past the deadline, a bug)
            # fails the call: the result() raise carries the batch's exception.
            return entry.future.result()
        started = entry.job.started
        if started is not None and now >= started + self._timeout:
            return self._timed_out(entry.job)
        return None

    def _wake_in(self, now: float) -> float | None:
        limits = [e.job.started + self._timeout for e in self._pending if e.job.started is not None]
        if self._deadline is not None:
            limits.append(self._deadline)
        return max(0.0, min(limits) - now) if limits else None

    def _timed_out(self, job: Job) -> PointwiseJudgement:
        return PointwiseJudgement(
            sample_id=job.sample.id,
            stamp=self._stamp,
            expected=0.0,
            argmax=0,
            distribution=(),
            mass=0.0,
            reasoning="",
            valid=False,
            invalid_reason="engine_error",
            prompt_tokens=0,
            completion_tokens=0,
            latency_s=self._timeout,
            detail=f"the gold judge gave no answer within the per-sample timeout "
            f"of {self._timeout:g} s",
        )


def _deadline_exceeded(pending: int) -> DeadlineExceeded:
    return DeadlineExceeded(
        Problem("", "DEADLINE_EXCEEDED", f"the deadline passed with {pending} sample(s) unjudged")
    )
