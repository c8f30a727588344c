"""Dynamic micro-batching in front of one model: bounded, deadline-aware, drained on close.

Requests put items on a bounded queue; one worker thread takes up to ``max_batch`` of them
(waiting up to ``max_wait_s`` for more once the first is there) and runs them as one batch.
While a batch runs, new items queue up, so under load batches fill by themselves and
``max_wait_s`` can stay 0 (no added latency when idle). A caller submitting several requests that
belong together (a stream worker's read) holds the batcher meanwhile (``held``), so the first
request does not start a batch of its own. A full queue refuses the whole
request with RESOURCE_EXHAUSTED instead of growing without bound; an item whose deadline
passes while it waits is failed without calling the model.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Generic, TypeVar

from judgelab.serving.errors import (
    DeadlineExceeded,
    Problem,
    ResourceExhausted,
    Unavailable,
    invalid,
)

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)


@dataclass
class _Item(Generic[T, R]):
    value: T
    deadline: float | None
    future: Future[R]


class MicroBatcher(Generic[T, R]):
    """Runs ``run(batch)`` on one worker thread over items submitted from many threads."""

    def __init__(
        self,
        name: str,
        run: Callable[[list[T]], list[R]],
        *,
        max_batch: int,
        max_wait_s: float = 0.0,
        max_queue: int = 1024,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        if max_batch < 1 or max_queue < 1 or max_wait_s < 0:
            raise ValueError("max_batch and max_queue must be >= 1, max_wait_s >= 0")
        self.name = name
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self._run = run
        self._on_batch = on_batch
        self._queue: deque[_Item[T, R]] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._holds = 0
        self._busy_s_per_item = 0.0
        self._worker = threading.Thread(target=self._loop, name=f"batcher-{name}", daemon=True)
        self._worker.start()

    @property
    def queue_length(self) -> int:
        with self._cond:
            return len(self._queue)

    def submit(self, items: Sequence[T], deadline: float | None = None) -> list[Future[R]]:
        """Queue all of ``items`` or none of them; the futures complete in any order."""
        with self._cond:
            if self._closed:
                raise Unavailable(Problem("", "SHUTTING_DOWN", f"judge {self.name!r} is stopping"))
            if len(items) > self.max_queue:
                raise invalid(
                    "samples",
                    "TOO_MANY",
                    f"at most {self.max_queue} items per request to judge {self.name!r}, "
                    f"got {len(items)}; split the request",
                )
            free = self.max_queue - len(self._queue)
            if len(items) > free:
                raise self._full(len(items), free)
            queued = [_Item[T, R](item, deadline, Future()) for item in items]
            self._queue.extend(queued)
            self._cond.notify()
        return [item.future for item in queued]

    @contextmanager
    def held(self) -> Iterator[None]:
        """No new batch starts while inside (a running one finishes): what is submitted inside
        is batched together, up to ``max_batch``. Keep it short: it only covers submits."""
        with self._cond:
            self._holds += 1
        try:
            yield
        finally:
            with self._cond:
                self._holds -= 1
                self._cond.notify()

    def close(self, drain: bool = True) -> None:
        """Stop taking work; with ``drain`` finish everything queued, else fail it."""
        with self._cond:
            self._closed = True
            if not drain:
                while self._queue:
                    self._queue.popleft().future.set_exception(
                        Unavailable(Problem("", "SHUTTING_DOWN", "the server is stopping"))
                    )
            self._cond.notify_all()
        self._worker.join()

    # -- worker -----------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            live = [item for item in batch if self._still_wanted(item)]
            if live:
                self._execute(live)

    def _next_batch(self) -> list[_Item[T, R]] | None:
        with self._cond:
            while not self._queue or (self._holds and not self._closed):
                if self._closed and not self._queue:
                    return None
                self._cond.wait()
            if self.max_wait_s > 0 and len(self._queue) < self.max_batch:
                until = time.monotonic() + self.max_wait_s
                while len(self._queue) < self.max_batch and not self._closed:
                    left = until - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            count = min(self.max_batch, len(self._queue))
            return [self._queue.popleft() for _ in range(count)]

    def _still_wanted(self, item: _Item[T, R]) -> bool:
        if item.future.cancelled():
            return False
        if item.deadline is not None and time.monotonic() >= item.deadline:
            item.future.set_exception(
                DeadlineExceeded(Problem("", "DEADLINE_EXCEEDED", "the deadline passed in queue"))
            )
            return False
        return item.future.set_running_or_notify_cancel()

    def _execute(self, batch: list[_Item[T, R]]) -> None:
        started = time.perf_counter()
        try:
            results = self._run([item.value for item in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"batch of {len(batch)} gave {len(results)} results")
        except Exception as error:  # noqa: BLE001 - every caller gets the failure, worker lives
            log.exception("judge %s: batch of %d failed", self.name, len(batch))
            for item in batch:
                item.future.set_exception(error)
            return
        elapsed = time.perf_counter() - started
        self._busy_s_per_item = elapsed / len(batch)
        for item, result in zip(batch, results, strict=True):
            item.future.set_result(result)
        if self._on_batch is not None:
            self._on_batch(len(batch), elapsed)

    def _full(self, wanted: int, free: int) -> ResourceExhausted:
        backlog = self.max_queue - free + wanted
        retry_after = max(0.05, backlog * self._busy_s_per_item)
        return ResourceExhausted(
            Problem(
                "samples",
                "QUEUE_FULL",
                f"judge {self.name!r} has room for {free} more items, the request has {wanted}; "
                f"retry in about {retry_after:.1f} s",
            ),
            retry_after_s=retry_after,
        )
