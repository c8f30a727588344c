"""A stream worker whose blocking read woke on the first message of a burst lingers for the rest:
messages added a few ms apart (one producer's burst) are worked on as one batch."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence

import pytest
import redis

from judgelab.queues import Consumer, Delivery, connect
from judgelab.queues.consumer import Output
from judgelab.serving.stream_worker import Finish, StreamWorker

IN, OUT, GROUP = "jl:linger:in", "jl:linger:out", "g"


class BatchRecorder:
    """Records how many messages each batch (the submits before the first finish) held."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self._open = 0

    def parse(self, delivery: Delivery) -> tuple[str, str]:
        message_id = delivery.fields[b"id"].decode()
        return message_id, message_id

    def submit(self, message: str) -> Finish:
        self._open += 1

        def finish() -> Sequence[Output]:
            if self._open:
                self.batches.append(self._open)
                self._open = 0
            return [(OUT, {"id": message})]

        return finish


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = connect(redis_url)
    yield c
    c.close()


def _step_during_burst(client: redis.Redis, linger_ms: int, gap_s: float) -> BatchRecorder:
    handler = BatchRecorder()
    consumer = Consumer(client, IN, GROUP, "w1")
    worker = StreamWorker(consumer, handler, count=16, block_ms=2000, linger_ms=linger_ms)

    def burst() -> None:
        time.sleep(0.3)  # the worker is blocked in XREADGROUP by now
        client.xadd(IN, {"id": "first"})
        time.sleep(gap_s)
        client.xadd(IN, {"id": "second"})

    producer = threading.Thread(target=burst)
    producer.start()
    read = worker.step()
    producer.join()
    read += worker.step()  # whatever the first step left
    assert read == 2
    return handler


def test_messages_of_one_burst_are_one_batch(client: redis.Redis) -> None:
    assert _step_during_burst(client, linger_ms=200, gap_s=0.01).batches == [2]


def test_without_linger_the_first_message_is_a_batch_of_its_own(client: redis.Redis) -> None:
    assert _step_during_burst(client, linger_ms=0, gap_s=0.1).batches == [1, 1]
