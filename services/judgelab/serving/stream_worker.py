"""The Redis-stream mode of a service: read work, submit it all, complete each atomically.

Every message of one read is submitted before any is awaited, so the service's micro-batcher
sees them together (the G rollouts of several groups batch into one model call). A result is
written and the message acknowledged in one transaction (``Consumer.complete``), keyed by the
message's own id so a redelivered message is never judged twice. What happens on failure:

* malformed message, or one the service refuses (unknown judge, too long): dead-lettered
  at once with the reason — retrying cannot help;
* any other error while working on it (overload, a model error, a poison message that breaks
  the handler or its outputs): logged with the message id and counted
  (``judgelab_stream_failures_total``), left pending; the consumer group redelivers it after
  its claim timeout and dead-letters it after ``max_deliveries``. A redelivered message is
  worked on alone, so a poison message fails only itself, not the batch it arrives with.

An error outside any one message (Redis refusing a command, a bug) is logged and the loop goes on
after a back-off: a worker thread ends only when told to stop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from judgelab.queues.codec import BadMessage
from judgelab.queues.connection import RedisUnavailable
from judgelab.queues.consumer import Consumer, Delivery, Output
from judgelab.serving.errors import FailedPrecondition, InvalidArgument, NotFound
from judgelab.serving.metrics import ServiceMetrics

log = logging.getLogger(__name__)

M = TypeVar("M")
M_contra = TypeVar("M_contra", contravariant=True)
#: Blocks until the work is done; returns what to write (stream, fields) on completion.
Finish = Callable[[], Sequence[Output]]
REFUSED = (BadMessage, InvalidArgument, FailedPrecondition, NotFound)
ERROR_BACKOFF_S = (0.5, 30.0)  # first and longest pause after a step failed outside a message
#: After a blocking read wakes on fewer than ``count`` messages, wait this long and take what else
#: arrived (as Kafka's linger.ms): a producer's burst, e.g. the groups of one sampled batch, that
#: woke the read with its first message, becomes one batch instead of several.
LINGER_MS = 50


class StreamHandler(Protocol[M]):
    def parse(self, delivery: Delivery) -> tuple[str, M]:
        """The message's idempotency id and content; raises BadMessage if malformed."""

    def submit(self, message: M) -> Finish:
        """Start the work (non-blocking); raises a ServiceError if the service refuses it."""


#: A handler may also have ``held() -> ContextManager``: the worker submits a read's messages
#: inside it, so that the handler's micro-batcher starts one batch for all of them.


@dataclass
class _Job(Generic[M]):
    delivery: Delivery
    processed_id: str
    finish: Finish


class StreamWorker(Generic[M]):
    """Consumes one stream with ``handler`` until ``stop`` is set."""

    def __init__(
        self,
        consumer: Consumer,
        handler: StreamHandler[M],
        *,
        count: int = 16,
        block_ms: int = 1000,
        linger_ms: int = LINGER_MS,
        metrics: ServiceMetrics | None = None,
        stats_every_s: float = 5.0,
    ) -> None:
        self.consumer = consumer
        self.handler = handler
        self.count = count
        self.block_ms = block_ms
        self.linger_ms = linger_ms
        self.metrics = metrics
        self.stats_every_s = stats_every_s
        self.failed_total = 0
        self._stats_at = 0.0
        self._exported = (0, 0)  # reclaimed, dead-lettered already added to the counters

    def run(self, stop: threading.Event) -> None:
        log.info(
            "consuming %s as %s/%s",
            self.consumer.stream,
            self.consumer.group,
            self.consumer.consumer,
        )
        pause = ERROR_BACKOFF_S[0]
        while not stop.is_set():
            try:
                self.step()
            except Exception as error:  # noqa: BLE001 - the worker must outlive any one failure
                log.error(
                    "stream worker on %s failed; going on in %.1f s: %s: %s",
                    self.consumer.stream, pause, type(error).__name__, error,
                    exc_info=None if isinstance(error, RedisUnavailable) else error,
                )  # fmt: skip
                stop.wait(pause)
                pause = min(pause * 2, ERROR_BACKOFF_S[1])
                continue
            pause = ERROR_BACKOFF_S[0]

    def step(self) -> int:
        """One read and its work; returns how many messages were read."""
        deliveries = self.consumer.read(self.count, self.block_ms)
        if deliveries and len(deliveries) < self.count and self.linger_ms > 0:
            time.sleep(self.linger_ms / 1000)
            deliveries += self.consumer.read_new(self.count - len(deliveries))
        fresh = [d for d in deliveries if d.deliveries <= 1]
        self._work(fresh)
        for retried in (d for d in deliveries if d.deliveries > 1):
            self._work([retried])
        self._export_stats()
        return len(deliveries)

    # -- internals --------------------------------------------------------------------
    def _work(self, deliveries: list[Delivery]) -> None:
        """Submit all, then finish each: the handler sees them as one batch."""
        held = getattr(self.handler, "held", None)
        with held() if held is not None else nullcontext():
            jobs = [job for job in map(self._start, deliveries) if job is not None]
        for job in jobs:
            self._finish(job)

    def _start(self, delivery: Delivery) -> _Job[M] | None:
        try:
            processed_id, message = self.handler.parse(delivery)
            if self.consumer.already_done(processed_id):
                self.consumer.skip(delivery)
                return None
            return _Job(delivery, processed_id, self.handler.submit(message))
        except REFUSED as error:
            log.warning("dead-lettering %s: %s", delivery.id, error)
            self.consumer.reject(delivery, str(error))
            return None
        except Exception as error:  # noqa: BLE001 - left pending: redelivered after idle
            self._failed(delivery, error)
            return None

    def _finish(self, job: _Job[M]) -> None:
        try:
            outputs = job.finish()
        except REFUSED as error:
            self.consumer.reject(job.delivery, str(error))
            return
        except Exception as error:  # noqa: BLE001
            self._failed(job.delivery, error)
            return
        try:
            self.consumer.complete(job.delivery, outputs, job.processed_id)
        except Exception as error:  # noqa: BLE001 - e.g. outputs Redis cannot store
            self._failed(job.delivery, error)

    def _failed(self, delivery: Delivery, error: Exception) -> None:
        self.failed_total += 1
        if self.metrics is not None:
            labels = self.metrics.labels(stream=self.consumer.stream)
            self.metrics.stream_failures.labels(**labels).inc()
        log.warning(
            "message %s of %s failed on delivery %d of at most %d, left pending for "
            "redelivery: %s: %s", delivery.id, self.consumer.stream, delivery.deliveries,
            self.consumer.max_deliveries, type(error).__name__, error,
            exc_info=error if delivery.deliveries == 1 else None,
        )  # fmt: skip

    def _export_stats(self) -> None:
        now = time.monotonic()
        if self.metrics is None or now - self._stats_at < self.stats_every_s:
            return
        self._stats_at = now
        stats = self.consumer.stats()
        labels = self.metrics.labels(stream=stats.stream)
        self.metrics.stream_lag.labels(**labels).set(stats.lag)
        self.metrics.stream_pending.labels(**labels).set(stats.pending)
        reclaimed, dead = self._exported
        self.metrics.reclaimed.labels(**labels).inc(stats.reclaimed_total - reclaimed)
        self.metrics.dead_lettered.labels(**labels).inc(stats.dead_lettered_total - dead)
        self._exported = (stats.reclaimed_total, stats.dead_lettered_total)
