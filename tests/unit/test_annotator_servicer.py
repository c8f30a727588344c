"""The GoldAnnotator servicer on a real gRPC server on 127.0.0.1, with a scripted gold model."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from test_annotator_core import GOLD, ScriptedEngine

from judgelab.annotator.annotating import Annotating
from judgelab.annotator.cache import MemoryCache
from judgelab.annotator.core import GoldAnnotatorCore
from judgelab.annotator.server import start_gold_annotator_server
from judgelab.api.v1 import common_pb2, gold_annotator_pb2, gold_annotator_pb2_grpc
from judgelab.judging import JudgeConfig, PointwiseJudge
from judgelab.serving.errors import error_details
from judgelab.serving.server import GrpcServer

USER = common_pb2.ROLE_USER


def sample(i: int, prefix: str = "s", **extra: str) -> common_pb2.Sample:
    fields = {"response": "y" * (i + 3), **extra}
    return common_pb2.Sample(
        id=f"{prefix}{i}",
        prompt=[common_pb2.ChatMessage(role=USER, content=f"Question {i}?")],
        **fields,
    )


def request(*samples: common_pb2.Sample, **fields: object) -> gold_annotator_pb2.AnnotateRequest:
    return gold_annotator_pb2.AnnotateRequest(samples=list(samples), **fields)  # type: ignore[arg-type]


class Served:
    def __init__(self, engine: ScriptedEngine, core: GoldAnnotatorCore, server: GrpcServer):
        self.engine, self.core, self.server = engine, core, server
        self.channel = grpc.insecure_channel(server.address)
        self.stub = gold_annotator_pb2_grpc.GoldAnnotatorStub(self.channel)


@pytest.fixture
def served() -> Iterator[Served]:
    engine = ScriptedEngine(context_length=600)
    core = GoldAnnotatorCore(PointwiseJudge(engine, GOLD), cache=MemoryCache(), max_batch=4)
    server = start_gold_annotator_server(core)
    s = Served(engine, core, server)
    yield s
    engine.gate.set()
    s.channel.close()
    server.stop(grace_s=1)
    core.close()


def test_annotate_twice_the_second_time_from_the_cache(served: Served):
    req = request(*(sample(i) for i in range(5)))
    first = served.stub.Annotate(req, timeout=30)
    calls = served.core.model_calls
    second = served.stub.Annotate(req, timeout=30)

    assert served.core.model_calls == calls
    assert [a.score.sample_id for a in first.annotations] == [f"s{i}" for i in range(5)]
    assert [a.cached for a in first.annotations] == [False] * 5
    assert [a.cached for a in second.annotations] == [True] * 5
    assert [a.score for a in second.annotations] == [a.score for a in first.annotations]
    for a in second.annotations:
        assert a.score.valid and a.score.judge == "gold"
        assert a.gold_reasoning == a.score.reasoning and "Weighing" in a.gold_reasoning
        assert a.score.judge_config_hash == served.core.stamp.config_hash


def test_annotate_stream_answers_every_sample_of_every_request(served: Served):
    requests = [request(*(sample(i, prefix=f"r{r}-") for i in range(3))) for r in range(3)]
    requests[2].samples.append(sample(0))
    answers = list(served.stub.AnnotateStream(iter(requests), timeout=30))
    ids = [a.score.sample_id for a in answers]
    assert sorted(ids) == sorted(s.id for req in requests for s in req.samples)
    assert all(a.score.valid and a.gold_reasoning for a in answers)

    again = list(served.stub.AnnotateStream(iter(requests), timeout=30))
    assert all(a.cached for a in again)
    assert {a.score.sample_id: a.score.expected_score for a in again} == {
        a.score.sample_id: a.score.expected_score for a in answers
    }


def test_stream_results_arrive_before_the_client_closes_its_side(served: Served):
    more = threading.Event()

    def requests() -> Iterator[gold_annotator_pb2.AnnotateRequest]:
        yield request(sample(1))
        more.wait(30)
        yield request(sample(2))

    call = served.stub.AnnotateStream(requests(), timeout=30)
    first = next(call)
    assert first.score.sample_id == "s1"
    more.set()
    assert [a.score.sample_id for a in call] == ["s2"]


def _invalid(call: object) -> list[tuple[str, str]]:
    assert isinstance(call, grpc.RpcError)
    assert call.code() == grpc.StatusCode.INVALID_ARGUMENT, call
    return [(d.field, d.reason) for d in error_details(call)]


@pytest.mark.parametrize(
    "bad, expected",
    [
        (request(), ("samples", "REQUIRED")),
        (request(sample(0), sample(1, response=" \n")), ("samples[1].response", "REQUIRED")),
        (request(sample(0), sample(0)), ("samples[1].id", "DUPLICATE_ID")),
        (
            request(sample(0), per_sample_timeout=Duration(seconds=-1)),
            ("per_sample_timeout", "OUT_OF_RANGE"),
        ),
        (request(sample(0), per_sample_timeout=Duration()), ("per_sample_timeout", "OUT_OF_RANGE")),
        (
            request(sample(0), common_pb2.Sample(id="x", response="r")),
            ("samples[1].prompt", "REQUIRED"),
        ),
        (
            request(sample(0, response="a very long answer " * 200)),
            ("samples[0].response", "TOO_LONG"),
        ),
    ],
    ids=[
        "empty",
        "blank-response",
        "duplicate-id",
        "negative-timeout",
        "zero-timeout",
        "no-prompt",
        "too-long",
    ],
)
def test_bad_requests_name_the_field(
    served: Served, bad: gold_annotator_pb2.AnnotateRequest, expected: tuple[str, str]
):
    with pytest.raises(grpc.RpcError) as raised:
        served.stub.Annotate(bad, timeout=30)
    assert _invalid(raised.value) == [expected]
    with pytest.raises(grpc.RpcError) as streamed:
        list(served.stub.AnnotateStream(iter([request(sample(5)), bad]), timeout=30))
    assert _invalid(streamed.value) == [expected]
    assert served.engine.batches in ([], [1])  # only the good first request of the stream


def test_reference_guided_gold_needs_references():
    engine = ScriptedEngine()
    config = JudgeConfig(
        name="gold", model="scripted", reasoning=True, max_new_tokens=16, reference_guided=True
    )
    core = GoldAnnotatorCore(PointwiseJudge(engine, config))
    server = start_gold_annotator_server(core)
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = gold_annotator_pb2_grpc.GoldAnnotatorStub(channel)
            with pytest.raises(grpc.RpcError) as raised:
                stub.Annotate(request(sample(0, reference="ref"), sample(1)), timeout=30)
            assert _invalid(raised.value) == [("samples[1].reference", "REQUIRED")]
            ok = stub.Annotate(request(sample(0, reference="ref")), timeout=30)
            assert ok.annotations[0].score.valid
    finally:
        server.stop(grace_s=1)
        core.close()


def test_the_grpc_deadline_is_honoured(served: Served):
    served.engine.gate.clear()
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as raised:
        served.stub.Annotate(request(sample(0)), timeout=0.5)
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 5
    served.engine.gate.set()
    assert served.stub.Annotate(request(sample(1)), timeout=30).annotations[0].score.valid


def test_the_per_sample_timeout_gives_an_invalid_annotation(served: Served):
    served.engine.gate.clear()
    reply = served.stub.Annotate(
        request(sample(0), per_sample_timeout=Duration(nanos=200_000_000)), timeout=30
    )
    [annotation] = reply.annotations
    assert (annotation.score.valid, annotation.score.invalid_reason) == (False, "engine_error")
    assert not annotation.cached


def test_a_cancelled_stream_frees_its_queued_work_and_the_server_goes_on(
    served: Served, monkeypatch: pytest.MonkeyPatch
):
    handles: list[Annotating] = []
    start = served.core.start

    def recording_start(*args: Any, **kwargs: Any) -> Annotating:
        handles.append(start(*args, **kwargs))
        return handles[-1]

    monkeypatch.setattr(served.core, "start", recording_start)
    served.engine.gate.clear()  # the first batch blocks in the model; the rest stays queued
    call = served.stub.AnnotateStream(iter([request(*(sample(i) for i in range(12)))]), timeout=30)
    _until(lambda: len(handles) == 1)
    call.cancel()
    _until(lambda: handles[0]._cancelled)
    served.engine.gate.set()
    reply = served.stub.Annotate(request(sample(0, prefix="after-", response="new")), timeout=30)
    assert reply.annotations[0].score.valid
    # The running batch of 4 finished; the 8 cancelled samples never reached the model.
    assert served.engine.batches == [4, 1]


def _until(condition: Callable[[], object], timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)
