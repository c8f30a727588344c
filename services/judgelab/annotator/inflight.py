"""Samples being judged right now, so that concurrent requests for the same sample share one
model call instead of each missing the cache and paying for it.

A request joins a sample in flight only when that job's deadline is no earlier than its own
(the batcher drops a job whose deadline passes in the queue, which would fail the joiner too).
Each holder releases its share when it stops waiting; the job is cancelled only when the last
holder lets go, so one caller hanging up never cancels another caller's work.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import dataclass

from judgelab.annotator.annotating import Job, Waiting
from judgelab.judging import PointwiseJudgement


@dataclass(eq=False)
class _Shared:
    job: Job
    future: Future[PointwiseJudgement]
    holders: int


class InFlight:
    """Key -> the job judging it; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, _Shared] = {}
        self.joined = 0  # samples that shared another request's model call

    def join(self, key: str, deadline: float | None) -> Waiting | None:
        """A waiting entry on the job already judging ``key``, or None (submit a new one)."""
        with self._lock:
            shared = self._jobs.get(key)
            if shared is None or shared.future.done() or not _covers(shared.job, deadline):
                return None
            shared.holders += 1
            self.joined += 1
            return Waiting(shared.job, shared.future)

    def register(self, entry: Waiting) -> None:
        """Record a newly submitted job; it leaves the registry when it finishes."""
        shared = _Shared(entry.job, entry.future, holders=1)
        with self._lock:
            self._jobs[entry.job.key] = shared
        entry.future.add_done_callback(lambda _: self._forget(entry.job.key, shared))

    def release(self, entry: Waiting) -> bool:
        """Drop one holder; True when nobody else waits (the caller may cancel the job)."""
        with self._lock:
            shared = self._jobs.get(entry.job.key)
            if shared is None or shared.future is not entry.future:
                return True
            shared.holders -= 1
            return shared.holders <= 0

    def _forget(self, key: str, shared: _Shared) -> None:
        with self._lock:
            if self._jobs.get(key) is shared:
                del self._jobs[key]


def _covers(job: Job, deadline: float | None) -> bool:
    if job.deadline is None:
        return True
    return deadline is not None and job.deadline >= deadline
