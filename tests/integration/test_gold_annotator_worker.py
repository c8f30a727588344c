"""The gold annotator's stream mode on a real redis-server: gold requests in, results with the
gold reasoning out, cached repeats, exactly once per request id, bad requests dead-lettered."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from judgelab.annotator.cache import AnnotationCache
from judgelab.annotator.core import GoldAnnotatorCore
from judgelab.annotator.worker import GoldRequestHandler
from judgelab.engines.base import ChatMessage
from judgelab.engines.constant import ConstantEngine
from judgelab.judging import JudgeConfig, PointwiseJudge
from judgelab.queues import Consumer, connect
from judgelab.queues.messages import GoldRequest, GoldResult, SampleMessage
from judgelab.queues.names import StreamNames
from judgelab.serving.stream_worker import StreamWorker

NAMES = StreamNames("demo")
GOLD = JudgeConfig(name="gold", model="constant", reasoning=True, max_new_tokens=32)


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    connection = connect(redis_url)
    yield connection
    connection.close()


@pytest.fixture
def core(client: redis.Redis) -> Iterator[GoldAnnotatorCore]:
    annotator = GoldAnnotatorCore(PointwiseJudge(ConstantEngine(), GOLD),
                                  cache=AnnotationCache(client))
    yield annotator
    annotator.close()


def _request(request_id: str, n: int = 3) -> GoldRequest:
    return GoldRequest(request_id, [
        SampleMessage(f"s{i}", [ChatMessage("user", "Name a colour.")], f"colour {i}", None)
        for i in range(n)
    ])


def _drain(client: redis.Redis, core: GoldAnnotatorCore) -> StreamWorker[GoldRequest]:
    consumer = Consumer(client, NAMES.gold_requests, "gold-annotator", "w1")
    worker = StreamWorker(consumer, GoldRequestHandler(core, NAMES), block_ms=50)
    while worker.step():
        pass
    return worker


def _results(client: redis.Redis) -> list[GoldResult]:
    return [GoldResult.from_fields(f) for _, f in client.xrange(NAMES.gold_results)]


def test_requests_are_annotated_with_reasoning_and_repeats_come_from_the_cache(
    client: redis.Redis, core: GoldAnnotatorCore
) -> None:
    client.xadd(NAMES.gold_requests, _request("r1").to_fields())
    _drain(client, core)
    client.xadd(NAMES.gold_requests, _request("r2").to_fields())
    _drain(client, core)
    first, second = _results(client)
    assert [a["sample_id"] for a in first.annotations] == ["s0", "s1", "s2"]
    assert all(a["valid"] and a["argmax"] == 7 for a in first.annotations)
    assert all("adequate" in a["gold_reasoning"] for a in first.annotations)
    assert not any(a["cached"] for a in first.annotations)
    assert all(a["cached"] for a in second.annotations)
    assert core.model_calls == 1


def test_a_request_sent_twice_is_answered_once(
    client: redis.Redis, core: GoldAnnotatorCore
) -> None:
    client.xadd(NAMES.gold_requests, _request("same").to_fields())
    client.xadd(NAMES.gold_requests, _request("same").to_fields())
    worker = _drain(client, core)
    assert [r.request_id for r in _results(client)] == ["same"]
    assert worker.consumer.pending_count() == 0


def test_malformed_requests_are_dead_lettered(
    client: redis.Redis, core: GoldAnnotatorCore
) -> None:
    client.xadd(NAMES.gold_requests, {"kind": "gold_request", "v": "1", "data": "[]"})
    client.xadd(NAMES.gold_requests, _request("ok", 1).to_fields())
    _drain(client, core)
    assert [r.request_id for r in _results(client)] == ["ok"]
    assert client.xlen(NAMES.dead_letter(NAMES.gold_requests)) == 1
