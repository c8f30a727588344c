"""The judge pool over real gRPC on 127.0.0.1: answers, bad input, back-pressure, deadlines,
micro-batching, graceful shutdown, metrics. Engines: a constant one (gated where timing
matters) and the tiny transformers model."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from judge_pool_support import (
    GatedEngine,
    Running,
    constant_pool,
    running,
    sample,
    score_request,
)

from judgelab.api.v1 import judge_pool_pb2
from judgelab.engines.base import ChatMessage
from judgelab.engines.transformers_engine import TransformersEngine
from judgelab.judge_pool.pool import JudgePool
from judgelab.judging import JudgeConfig, PointwiseJudge, Sample
from judgelab.serving.errors import error_details
from judgelab.serving.interceptor import RETRY_AFTER_KEY
from judgelab.serving.metrics import ServiceMetrics

SCORE_METHOD = "/judgelab.v1.JudgePool/Score"


@pytest.fixture
def service() -> Iterator[Running]:
    with running(constant_pool()) as handle:
        yield handle


def _status(call: grpc.RpcError) -> tuple[grpc.StatusCode, list[tuple[str, str]]]:
    return call.code(), [(d.field, d.reason) for d in error_details(call)]


def test_score_returns_the_expected_score_and_stamp(service: Running) -> None:
    response = service.stub.Score(score_request(n=3), timeout=10)
    assert [s.sample_id for s in response.scores] == ["s0", "s1", "s2"]
    score = response.scores[0]
    assert score.valid and score.argmax_score == 7
    # 0.9 on 7, 0.1 shared by the 9 other digits 0..9: 0.9*7 + (0.1/9)*(45-7)
    assert score.expected_score == pytest.approx(0.9 * 7 + 0.1 / 9 * 38)
    assert score.judge == "plain" and len(score.judge_config_hash) == 64
    assert score.template_id == "pointwise-v1"


def test_pairwise_both_orders(service: Running) -> None:
    pair = judge_pool_pb2.Pair(id="p", prompt=sample().prompt, response_a="a", response_b="b")
    response = service.stub.ScorePairwise(
        judge_pool_pb2.ScorePairwiseRequest(judge="pairs", pairs=[pair], both_orders=True),
        timeout=10,
    )
    (result,) = response.results
    assert len(result.orders) == 2 and result.pair_id == "p"


@pytest.mark.parametrize(
    ("request_", "field", "reason", "code"),
    [
        (score_request(judge="nope"), "judge", "UNKNOWN_JUDGE", grpc.StatusCode.INVALID_ARGUMENT),
        (score_request(judge=""), "judge", "REQUIRED", grpc.StatusCode.INVALID_ARGUMENT),
        (score_request(response=""), "samples[0].response", "REQUIRED",
         grpc.StatusCode.INVALID_ARGUMENT),
        (score_request(response=" \n\t"), "samples[0].response", "REQUIRED",
         grpc.StatusCode.INVALID_ARGUMENT),
        (score_request(prompt="  "), "samples[0].prompt[0].content", "REQUIRED",
         grpc.StatusCode.INVALID_ARGUMENT),
        (judge_pool_pb2.ScoreRequest(judge="plain"), "samples", "REQUIRED",
         grpc.StatusCode.INVALID_ARGUMENT),
        (score_request(judge="guided"), "samples[0].reference", "REQUIRED",
         grpc.StatusCode.INVALID_ARGUMENT),
        (score_request(judge="pairs"), "judge", "WRONG_PROTOCOL",
         grpc.StatusCode.FAILED_PRECONDITION),
        (score_request(response="word " * 9000), "samples[0].response", "TOO_LONG",
         grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_bad_input_names_the_field(
    service: Running, request_: judge_pool_pb2.ScoreRequest, field: str, reason: str,
    code: grpc.StatusCode,
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        service.stub.Score(request_, timeout=10)
    assert _status(caught.value) == (code, [(field, reason)])


def test_duplicate_ids_are_refused(service: Running) -> None:
    request = judge_pool_pb2.ScoreRequest(judge="plain", samples=[sample("x"), sample("x")])
    with pytest.raises(grpc.RpcError) as caught:
        service.stub.Score(request, timeout=10)
    assert _status(caught.value)[1] == [("samples[1].id", "DUPLICATE_ID")]


def test_non_utf8_bytes_are_invalid_argument_naming_the_field(service: Running) -> None:
    wire = score_request(n=2, response="@@@@").SerializeToString()
    first = wire.index(b"@@@@")
    second = wire.index(b"@@@@", first + 1)
    broken = wire[:second] + b"\xff\xfe\xc3(" + wire[second + 4 :]
    raw = service.channel.unary_unary(SCORE_METHOD, request_serializer=None,
                                      response_deserializer=None)
    with pytest.raises(grpc.RpcError) as caught:
        raw(broken, timeout=10)
    assert _status(caught.value) == (grpc.StatusCode.INVALID_ARGUMENT,
                                     [("samples[1].response", "INVALID_UTF8")])
    assert service.stub.Score(score_request(), timeout=10).scores[0].valid


def test_full_queue_gives_resource_exhausted_with_retry_after() -> None:
    engine = GatedEngine()
    engine.gate.clear()
    with running(constant_pool(engine, max_batch=2, max_queue=4)) as svc, \
            ThreadPoolExecutor(2) as threads:
        first = threads.submit(svc.stub.Score, score_request(n=2), timeout=20)
        assert engine.entered.wait(5)  # the worker holds 2 items; the queue is empty again
        second = threads.submit(svc.stub.Score, score_request(n=4), timeout=20)
        _wait_for(lambda: svc.pool.get("plain").batcher.queue_length == 4)
        with pytest.raises(grpc.RpcError) as caught:
            svc.stub.Score(score_request(n=1), timeout=5)
        code, details = _status(caught.value)
        assert (code, details) == (grpc.StatusCode.RESOURCE_EXHAUSTED, [("samples", "QUEUE_FULL")])
        trailers = dict(caught.value.trailing_metadata())
        assert int(trailers[RETRY_AFTER_KEY]) > 0
        engine.gate.set()
        assert len(first.result().scores) == 2 and len(second.result().scores) == 4


def test_request_larger_than_the_queue_is_invalid(service: Running) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        service.stub.Score(score_request(n=65), timeout=10)
    assert _status(caught.value) == (grpc.StatusCode.INVALID_ARGUMENT, [("samples", "TOO_MANY")])


def test_deadline_is_honoured_and_expired_items_never_reach_the_model() -> None:
    engine = GatedEngine()
    engine.gate.clear()
    with running(constant_pool(engine, max_batch=1)) as svc, ThreadPoolExecutor(1) as threads:
        blocker = threads.submit(svc.stub.Score, score_request(), timeout=20)
        assert engine.entered.wait(5)
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as caught:
            svc.stub.Score(score_request(n=3), timeout=0.3)
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - started < 2
        time.sleep(0.1)
        engine.gate.set()
        blocker.result()
        time.sleep(0.2)
        assert engine.batch_sizes == [1]  # the 3 late items were dropped unjudged


def test_concurrent_requests_are_micro_batched() -> None:
    engine = GatedEngine()
    engine.gate.clear()
    with running(constant_pool(engine, max_batch=8)) as svc, ThreadPoolExecutor(8) as threads:
        first = threads.submit(svc.stub.Score, score_request(), timeout=20)
        assert engine.entered.wait(5)
        rest = [threads.submit(svc.stub.Score, score_request(), timeout=20) for _ in range(6)]
        _wait_for(lambda: svc.pool.get("plain").batcher.queue_length == 6)
        engine.gate.set()
        assert all(len(f.result().scores) == 1 for f in [first, *rest])
    assert engine.batch_sizes == [1, 6]


def test_graceful_stop_finishes_in_flight_work() -> None:
    engine = GatedEngine()
    engine.gate.clear()
    pool = constant_pool(engine)
    with running(pool) as svc, ThreadPoolExecutor(1) as threads:
        in_flight = threads.submit(svc.stub.Score, score_request(n=2), timeout=20)
        assert engine.entered.wait(5)
        stopper = threading.Thread(target=svc.server.stop, kwargs={"grace_s": 10})
        stopper.start()
        time.sleep(0.2)
        engine.gate.set()
        assert len(in_flight.result().scores) == 2
        stopper.join(10)


def test_list_judges_reports_specs_and_stats(service: Running) -> None:
    service.stub.Score(score_request(n=2), timeout=10)
    judges = {j.spec.name: j for j in service.stub.ListJudges(judge_pool_pb2.ListJudgesRequest()
                                                              ).judges}
    assert set(judges) == {"plain", "pairs", "guided"}
    assert judges["plain"].stats.judged_total == 2 and judges["plain"].ready
    assert judges["guided"].spec.reference_guided


def test_metrics_endpoint_counts_requests_and_judgements() -> None:
    metrics = ServiceMetrics("judge-pool", experiment="demo")
    with running(constant_pool(metrics=metrics)) as svc:
        svc.stub.Score(score_request(n=3), timeout=10)
        with pytest.raises(grpc.RpcError):
            svc.stub.Score(score_request(judge="nope"), timeout=10)
        port = metrics.serve_http(0)
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    text = body.decode()
    assert ('judgelab_requests_total{code="OK",experiment="demo",method="Score",'
            'service="judge-pool"} 1.0') in text
    assert 'code="INVALID_ARGUMENT"' in text
    assert ('judgelab_judgements_total{experiment="demo",judge="plain",'
            'service="judge-pool"} 3.0') in text
    assert "judgelab_batch_size_bucket" in text


def test_tiny_model_judge_through_grpc(tiny_engine: TransformersEngine) -> None:
    pool = JudgePool()
    pool.add("tiny", PointwiseJudge(tiny_engine, JudgeConfig(name="tiny", model="tiny")),
             max_batch=4)
    direct = PointwiseJudge(tiny_engine, JudgeConfig(name="tiny", model="tiny"))
    with running(pool) as svc:
        served = svc.stub.Score(score_request(judge="tiny", n=5), timeout=60).scores
    expected = direct.judge([_core_sample(f"s{i}") for i in range(5)])
    assert [s.expected_score for s in served] == pytest.approx(
        [j.expected for j in expected], abs=1e-5)


def _core_sample(sample_id: str) -> Sample:
    return Sample(sample_id, [ChatMessage("user", "Capital of France?")], "Paris.")


def _wait_for(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    until = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > until:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def test_a_call_without_deadline_waits_for_its_result() -> None:
    engine = GatedEngine()
    engine.gate.clear()
    with running(constant_pool(engine)) as svc, ThreadPoolExecutor(1) as threads:
        call = threads.submit(svc.stub.Score, score_request(n=2))  # no timeout: no deadline
        assert engine.entered.wait(5)
        time.sleep(0.2)
        engine.gate.set()
        assert len(call.result(timeout=10).scores) == 2
