"""A stream worker on a real Redis outlives poison messages and errors outside any message.

A poison message (its handler raises, or its outputs cannot be written) is left pending,
redelivered after the claim timeout, worked on alone (its batch-mates are not dragged down),
and dead-lettered after ``max_deliveries``; the good messages around it are processed, the
failures and dead letters are counted in the metrics, and the worker keeps running.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence

import pytest
import redis

from judgelab.queues import Consumer, Delivery, connect
from judgelab.queues.consumer import Output
from judgelab.serving.metrics import ServiceMetrics
from judgelab.serving.stream_worker import Finish, StreamWorker

IN, OUT, GROUP = "jl:t:in", "jl:t:out", "g"
DEAD = f"{IN}:dead"
MAX_DELIVERIES = 3
CLAIM_IDLE_MS = 100


class Handler:
    """Echoes each message's id to OUT; the batch fails as a whole if it holds a `model-error`
    message (like one model call over the batch), and a `bad-output` message yields an entry
    with no fields, which the completion refuses."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self._batch: list[str] = []

    def parse(self, delivery: Delivery) -> tuple[str, str]:
        message_id = delivery.fields[b"id"].decode()
        return message_id, message_id

    def submit(self, message: str) -> Finish:
        self.calls[message] += 1
        self._batch.append(message)
        batch = self._batch

        def finish() -> Sequence[Output]:
            self._batch = []
            if any(m.startswith("model-error") for m in batch):
                raise RuntimeError(f"model failed on a batch of {len(batch)}")
            if message.startswith("bad-output"):
                return [(OUT, {})]
            return [(OUT, {"id": message})]

        return finish


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = connect(redis_url)
    yield c
    c.close()


def _until(condition: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _ids(client: redis.Redis, stream: str, field: bytes = b"id") -> list[str]:
    return [fields[field].decode() for _, fields in client.xrange(stream)]


def _start(
    client: redis.Redis, handler: Handler, metrics: ServiceMetrics
) -> tuple[StreamWorker[str], threading.Event, threading.Thread]:
    consumer = Consumer(
        client, IN, GROUP, "w1", claim_idle_ms=CLAIM_IDLE_MS, max_deliveries=MAX_DELIVERIES
    )
    worker = StreamWorker(
        consumer, handler, count=16, block_ms=50, metrics=metrics, stats_every_s=0
    )
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    return worker, stop, thread


def _sample(metrics: ServiceMetrics, name: str) -> float:
    value = metrics.registry.get_sample_value(
        name, {"experiment": "t", "service": "test", "stream": IN}
    )
    return value or 0.0


def test_poison_messages_are_dead_lettered_and_the_good_ones_processed(
    client: redis.Redis,
) -> None:
    handler = Handler()
    metrics = ServiceMetrics("test", experiment="t")
    good = [f"good-{i}" for i in range(6)]
    poison = ["model-error-1", "bad-output-1"]
    for message_id in good[:3] + poison + good[3:]:  # one read: the poison arrives mid-batch
        client.xadd(IN, {"id": message_id})
    worker, stop, thread = _start(client, handler, metrics)
    try:
        _until(lambda: client.xlen(DEAD) == len(poison) and sorted(_ids(client, OUT)) == good)
        assert thread.is_alive()
        late = "good-after-poison"
        client.xadd(IN, {"id": late})
        _until(lambda: late in _ids(client, OUT))
        _until(lambda: _sample(metrics, "judgelab_dead_lettered_messages_total") == len(poison))
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()

    assert sorted(_ids(client, OUT)) == sorted([*good, late])  # each good one exactly once
    dead = {f[b"dead_id"].decode(): f for _, f in client.xrange(DEAD)}
    dead_ids = {f[b"id"].decode(): int(f[b"dead_deliveries"]) for f in dead.values()}
    assert dead_ids == {m: MAX_DELIVERIES + 1 for m in poison}
    assert all(b"max_deliveries 3" in f[b"dead_reason"] for f in dead.values())
    assert all(handler.calls[m] == MAX_DELIVERIES for m in poison)
    # The model error failed its first batch once; redelivered alone, the good ones went through.
    assert all(handler.calls[m] <= 2 for m in good)
    assert worker.failed_total == _sample(metrics, "judgelab_stream_failures_total")
    assert worker.failed_total >= len(poison) * MAX_DELIVERIES
    assert client.xpending(IN, GROUP)["pending"] == 0


def test_an_error_outside_any_message_does_not_end_the_worker(client: redis.Redis) -> None:
    handler = Handler()
    metrics = ServiceMetrics("test", experiment="t")
    _, stop, thread = _start(client, handler, metrics)
    try:
        client.delete(IN)
        client.set(IN, "not a stream")  # every read now fails with WRONGTYPE
        time.sleep(1.0)
        assert thread.is_alive()
        client.delete(IN)  # the worker recreates its group and goes on
        client.xadd(IN, {"id": "after-wrongtype"})
        _until(lambda: _ids(client, OUT) == ["after-wrongtype"])
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
