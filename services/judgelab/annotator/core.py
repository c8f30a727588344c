"""The gold annotator without gRPC: cache first, then the gold judge through one micro-batcher.

A request's samples are looked up in the cache in one round trip; the misses (each distinct
sample once) are checked against the judge's context and queued on the batcher, whose worker
takes the rate limit's tokens, calls the judge once per batch and stores the results in the
cache before anyone sees them. A repeated request therefore makes no model call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future

from judgelab.annotator.annotating import Annotating, AnnotationResult, Job, Waiting
from judgelab.annotator.cache import AnnotationStore, CachedAnnotation, cache_key
from judgelab.annotator.checks import check_context, check_references
from judgelab.annotator.inflight import InFlight
from judgelab.annotator.ratelimit import RateLimiter
from judgelab.judging import PointwiseJudge, PointwiseJudgement, Sample, Stamp
from judgelab.serving.batcher import MicroBatcher
from judgelab.serving.metrics import ServiceMetrics

#: Reasoning gold judges think for minutes; the default leaves them ten.
DEFAULT_PER_SAMPLE_TIMEOUT_S = 600.0
SERVICE = "gold-annotator"


class GoldAnnotatorCore:
    """Annotates samples with one gold judge. ``model_calls`` counts batches sent to it."""

    def __init__(
        self,
        judge: PointwiseJudge,
        *,
        cache: AnnotationStore | None = None,
        rate_limiter: RateLimiter | None = None,
        max_batch: int = 8,
        max_wait_s: float = 0.0,
        max_queue: int = 1024,
        per_sample_timeout_s: float = DEFAULT_PER_SAMPLE_TIMEOUT_S,
        metrics: ServiceMetrics | None = None,
        owns_engine: bool = False,
    ) -> None:
        if per_sample_timeout_s <= 0:
            raise ValueError(f"per_sample_timeout_s must be > 0, got {per_sample_timeout_s}")
        self.judge = judge
        self.cache = cache
        self.rate_limiter = rate_limiter if rate_limiter is not None else RateLimiter(None)
        self.per_sample_timeout_s = per_sample_timeout_s
        self.metrics = metrics
        self.model_calls = 0
        self.judged = 0
        self._owns_engine = owns_engine
        self._progress = threading.Condition()
        self._starting = threading.Lock()
        self._in_flight = InFlight()
        self._batcher: MicroBatcher[Job, PointwiseJudgement] = MicroBatcher(
            judge.config.name, self._run, max_batch=max_batch, max_wait_s=max_wait_s,
            max_queue=max_queue,
        )

    @property
    def name(self) -> str:
        return self.judge.config.name

    @property
    def stamp(self) -> Stamp:
        return self.judge.prompt.stamp

    def key(self, sample: Sample) -> str:
        """The cache key; the reference counts only for a judge that reads it."""
        reference = sample.reference if self.judge.config.reference_guided else None
        return cache_key(self.stamp.config_hash, sample.prompt, sample.response, reference)

    def annotate(
        self,
        samples: Sequence[Sample],
        deadline: float | None = None,
        per_sample_timeout_s: float | None = None,
    ) -> list[AnnotationResult]:
        """One result per sample, in order. ``deadline``: a ``time.monotonic()`` value."""
        return self.start(samples, deadline, per_sample_timeout_s).results()

    def start(
        self,
        samples: Sequence[Sample],
        deadline: float | None = None,
        per_sample_timeout_s: float | None = None,
    ) -> Annotating:
        """Look up, check and queue ``samples``; wait on the returned handle."""
        timeout = per_sample_timeout_s
        if timeout is None:
            timeout = self.per_sample_timeout_s
        if timeout <= 0:
            raise ValueError(f"per_sample_timeout_s must be > 0, got {timeout}")
        check_references(self.judge, samples)
        keys = [self.key(sample) for sample in samples]
        found = self._lookup(keys, len(samples))
        hits = {
            i: AnnotationResult(found[key].judgement(samples[i].id), cached=True)
            for i, key in enumerate(keys)
            if key in found
        }
        misses: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            if key not in found:
                misses.setdefault(key, []).append(i)
        waiting = self._wait_for(samples, misses, deadline)
        return Annotating(
            samples, hits, waiting, progress=self._progress, deadline=deadline,
            per_sample_timeout_s=timeout, stamp=self.stamp, release=self._in_flight.release,
        )

    def close(self, drain: bool = True) -> None:
        """Stop taking work (finishing what is queued with ``drain``); close an owned engine."""
        self._batcher.close(drain=drain)
        if self._owns_engine:
            self.judge.engine.close()

    # -- internals ------------------------------------------------------------------------
    def _lookup(self, keys: list[str], requested: int) -> dict[str, CachedAnnotation]:
        if self.cache is None:
            return {}
        found = {
            key: hit
            for key, hit in self.cache.get_many(list(dict.fromkeys(keys))).items()
            if hit.stamp.config_hash == self.stamp.config_hash
        }
        if self.metrics is not None:
            hits = sum(1 for key in keys if key in found)
            labels = self.metrics.labels()
            self.metrics.cache_hits.labels(**labels).inc(hits)
            self.metrics.cache_misses.labels(**labels).inc(requested - hits)
        return found

    def _wait_for(
        self, samples: Sequence[Sample], misses: dict[str, list[int]], deadline: float | None
    ) -> list[Waiting]:
        """Join the samples another request is already judging; queue the rest (each once)."""
        with self._starting:
            joined, new = [], []
            for key, indices in misses.items():
                entry = self._in_flight.join(key, deadline)
                if entry is None:
                    entry = Waiting(Job(key, samples[indices[0]], deadline), Future())
                    new.append(entry)
                else:
                    joined.append(entry)
                entry.indices.extend(indices)
            check_context(self.judge, [(w.indices[0], w.job.sample) for w in new])
            for entry in self._submit(new, deadline):
                self._in_flight.register(entry)
        return joined + new

    def _submit(self, waiting: list[Waiting], deadline: float | None) -> list[Waiting]:
        if not waiting:
            return []
        futures = self._batcher.submit([w.job for w in waiting], deadline)
        for entry, future in zip(waiting, futures, strict=True):
            entry.future = future
            future.add_done_callback(self._wake)
        self._set_queue_gauge()
        return waiting

    def _wake(self, _future: Future[PointwiseJudgement]) -> None:
        with self._progress:
            self._progress.notify_all()

    def _run(self, jobs: list[Job]) -> list[PointwiseJudgement]:
        """The batcher's worker: rate limit, one judge call, cache, metrics."""
        deadlines = [job.deadline for job in jobs]
        latest = None if None in deadlines else max(d for d in deadlines if d is not None)
        waited = self.rate_limiter.acquire(len(jobs), deadline=latest)
        with self._progress:
            now = time.monotonic()
            for job in jobs:
                job.started = now
            self._progress.notify_all()
        started = time.perf_counter()
        judgements = self.judge.judge([job.sample for job in jobs])
        elapsed = time.perf_counter() - started
        self.model_calls += 1
        self.judged += len(jobs)
        if self.cache is not None:
            self.cache.put_many({job.key: j for job, j in zip(jobs, judgements, strict=True)})
        self._record(judgements, elapsed, waited)
        return judgements

    def _record(self, judgements: list[PointwiseJudgement], elapsed: float, waited: float) -> None:
        if self.metrics is None:
            return
        self.metrics.record_batch(self.name, len(judgements), elapsed)
        self.metrics.record_pointwise(self.name, judgements)
        if waited > 0:
            self.metrics.rate_limited_seconds.labels(**self.metrics.labels()).inc(waited)
        self._set_queue_gauge()

    def _set_queue_gauge(self) -> None:
        if self.metrics is not None:
            gauge = self.metrics.queue_length.labels(**self.metrics.labels(judge=self.name))
            gauge.set(self._batcher.queue_length)
