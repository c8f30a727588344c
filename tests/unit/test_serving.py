"""The shared serving kit on a real gRPC server on 127.0.0.1: error mapping, health,
reflection, graceful shutdown."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from judgelab.api.v1 import (
    gold_annotator_pb2,
    gold_annotator_pb2_grpc,
    judge_pool_pb2,
    judge_pool_pb2_grpc,
)
from judgelab.serving.errors import (
    Problem,
    ResourceExhausted,
    ServiceError,
    error_details,
    invalid,
)
from judgelab.serving.interceptor import RETRY_AFTER_KEY
from judgelab.serving.server import GrpcServer, ServiceBinding

JUDGE_POOL = judge_pool_pb2.DESCRIPTOR.services_by_name["JudgePool"].full_name
ANNOTATOR = gold_annotator_pb2.DESCRIPTOR.services_by_name["GoldAnnotator"].full_name


class ScriptedJudgePool(judge_pool_pb2_grpc.JudgePoolServicer):
    """ListJudges behaves as `mode` says."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.started = threading.Event()

    def ListJudges(self, request: Any, context: grpc.ServicerContext) -> Any:
        if self.mode == "invalid":
            raise invalid("samples[3].response", "REQUIRED", "must not be empty")
        if self.mode == "busy":
            raise ResourceExhausted(Problem("", "QUEUE_FULL", "judge queue is full"),
                                    retry_after_s=0.25)
        if self.mode == "bug":
            raise KeyError("secret-internal-detail")
        if self.mode == "abort":
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "no")
        if self.mode == "slow":
            self.started.set()
            time.sleep(0.5)
        return judge_pool_pb2.ListJudgesResponse()


class FailingAnnotator(gold_annotator_pb2_grpc.GoldAnnotatorServicer):
    def AnnotateStream(self, request_iterator: Any, context: Any) -> Iterator[Any]:
        for _ in request_iterator:
            raise invalid("samples", "REQUIRED", "at least one sample")
        yield gold_annotator_pb2.Annotation()


@pytest.fixture
def served() -> Iterator[tuple[ScriptedJudgePool, GrpcServer, grpc.Channel]]:
    pool = ScriptedJudgePool()
    server = GrpcServer([
        ServiceBinding(pool, judge_pool_pb2_grpc.add_JudgePoolServicer_to_server, JUDGE_POOL),
        ServiceBinding(FailingAnnotator(),
                       gold_annotator_pb2_grpc.add_GoldAnnotatorServicer_to_server, ANNOTATOR),
    ]).start()
    channel = grpc.insecure_channel(server.address)
    yield pool, server, channel
    channel.close()
    server.stop(grace_s=1)


def _list_judges(channel: grpc.Channel) -> Any:
    return judge_pool_pb2_grpc.JudgePoolStub(channel).ListJudges(
        judge_pool_pb2.ListJudgesRequest(), timeout=5)


def test_service_error_becomes_its_code_with_error_details(served: Any) -> None:
    pool, _, channel = served
    pool.mode = "invalid"
    with pytest.raises(grpc.RpcError) as caught:
        _list_judges(channel)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "samples[3].response" in caught.value.details()
    [detail] = error_details(caught.value)
    assert (detail.field, detail.reason) == ("samples[3].response", "REQUIRED")


def test_back_pressure_carries_retry_after(served: Any) -> None:
    pool, _, channel = served
    pool.mode = "busy"
    with pytest.raises(grpc.RpcError) as caught:
        _list_judges(channel)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    trailers = dict(caught.value.trailing_metadata())
    assert trailers[RETRY_AFTER_KEY] == "250"


def test_unexpected_error_is_internal_without_leaking_details(served: Any) -> None:
    pool, _, channel = served
    pool.mode = "bug"
    with pytest.raises(grpc.RpcError) as caught:
        _list_judges(channel)
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert "secret-internal-detail" not in caught.value.details()
    assert "ListJudges" in caught.value.details()


def test_servicer_abort_keeps_its_own_code(served: Any) -> None:
    pool, _, channel = served
    pool.mode = "abort"
    with pytest.raises(grpc.RpcError) as caught:
        _list_judges(channel)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_streaming_errors_are_mapped_too(served: Any) -> None:
    _, _, channel = served
    stub = gold_annotator_pb2_grpc.GoldAnnotatorStub(channel)
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.AnnotateStream(iter([gold_annotator_pb2.AnnotateRequest()]), timeout=5))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_health_reports_each_service_and_overall(served: Any) -> None:
    _, _, channel = served
    stub = health_pb2_grpc.HealthStub(channel)
    for service in ("", JUDGE_POOL, ANNOTATOR):
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_services(served: Any) -> None:
    _, _, channel = served
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    [reply] = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
    names = {s.name for s in reply.list_services_response.service}
    assert {JUDGE_POOL, ANNOTATOR, "grpc.health.v1.Health"} <= names


def test_graceful_stop_finishes_in_flight_calls(served: Any) -> None:
    pool, server, channel = served
    pool.mode = "slow"
    result: dict[str, Any] = {}
    caller = threading.Thread(target=lambda: result.update(reply=_list_judges(channel)))
    caller.start()
    assert pool.started.wait(5)
    server.stop(grace_s=5)
    caller.join(5)
    assert isinstance(result.get("reply"), judge_pool_pb2.ListJudgesResponse)


def test_service_error_needs_a_problem() -> None:
    with pytest.raises(ValueError):
        ServiceError()
