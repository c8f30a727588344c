"""The gold annotator for real: redis-server, a gRPC server on 127.0.0.1 and the built-in model
as the (reasoning) gold judge; and once with llama.cpp's OpenAI-compatible server as gold."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis
import yaml
from google.protobuf.duration_pb2 import Duration

from judgelab.annotator.core import GoldAnnotatorCore
from judgelab.annotator.server import build_gold_annotator, start_gold_annotator_server
from judgelab.api.v1 import common_pb2, gold_annotator_pb2, gold_annotator_pb2_grpc
from judgelab.engines.llamacpp_server import MODEL_ALIAS, N_CTX
from judgelab.engines.openai_engine import LLAMACPP_PLAIN_SAMPLING
from judgelab.engines.transformers_engine import TransformersEngine
from judgelab.serving.errors import error_details
from judgelab.serving.server import GrpcServer
from judgelab.spec import Experiment, validate_mapping

pytestmark = pytest.mark.slow

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart.yaml"
USER = common_pb2.ROLE_USER
ITEMS = [
    ("What is the capital of France?", "Paris."),
    ("What is the capital of France?", "London is the capital of France."),
    ("Name a primary colour.", "Blue."),
    ("How many legs does a spider have?", "Eight."),
    ("Why is the sky blue?", "Rayleigh scattering of sunlight by the air."),
]


def experiment(**gold: Any) -> Experiment:
    data = yaml.safe_load(QUICKSTART.read_text())
    data = copy.deepcopy(data)
    data["spec"]["gold"].update({"max_tokens": 48, **gold})
    return validate_mapping(data, str(QUICKSTART))


def sample(i: int, prefix: str = "s", **fields: Any) -> common_pb2.Sample:
    prompt, response = ITEMS[i % len(ITEMS)]
    values: dict[str, Any] = {"response": response, **fields}
    return common_pb2.Sample(
        id=f"{prefix}{i}", prompt=[common_pb2.ChatMessage(role=USER, content=prompt)], **values
    )


def request(*samples: common_pb2.Sample, **fields: Any) -> gold_annotator_pb2.AnnotateRequest:
    return gold_annotator_pb2.AnnotateRequest(samples=list(samples), **fields)


class Served:
    def __init__(self, core: GoldAnnotatorCore, client: redis.Redis) -> None:
        self.core = core
        self.redis = client
        self.server: GrpcServer = start_gold_annotator_server(core)
        self.channel = grpc.insecure_channel(self.server.address)
        self.stub = gold_annotator_pb2_grpc.GoldAnnotatorStub(self.channel)

    def close(self) -> None:
        self.channel.close()
        self.server.stop(grace_s=5)
        self.core.close()


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    """A client of the test's emptied Redis."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def serve(client: redis.Redis) -> Iterator[Callable[[GoldAnnotatorCore], Served]]:
    """Starts gRPC servers over cores built by the test; stops them all afterwards."""
    started: list[Served] = []

    def start(core: GoldAnnotatorCore) -> Served:
        started.append(Served(core, client))
        return started[-1]

    yield start
    for served in started:
        served.close()


@pytest.fixture
def gold(
    serve: Callable[[GoldAnnotatorCore], Served],
    client: redis.Redis,
    builtin_engine: TransformersEngine,
) -> Served:
    return serve(build_gold_annotator(experiment(), redis=client, engine=builtin_engine))


def _cached_keys(client: redis.Redis) -> list[bytes]:
    return sorted(client.scan_iter(match="jl:cache:gold:*"))


def test_a_repeated_batch_costs_no_model_call_and_returns_identical_scores(gold: Served):
    batch = request(*(sample(i) for i in range(4)), experiment="quickstart")
    first = gold.stub.Annotate(batch, timeout=600)
    calls = gold.core.model_calls
    assert calls >= 1
    assert len(_cached_keys(gold.redis)) == 4

    second = gold.stub.Annotate(batch, timeout=600)
    assert gold.core.model_calls == calls
    assert [a.cached for a in first.annotations] == [False] * 4
    assert [a.cached for a in second.annotations] == [True] * 4
    assert [a.score for a in second.annotations] == [a.score for a in first.annotations]
    assert [a.score.sample_id for a in second.annotations] == ["s0", "s1", "s2", "s3"]
    for annotation in second.annotations:
        assert annotation.gold_reasoning.strip()
        assert annotation.gold_reasoning == annotation.score.reasoning
        assert annotation.score.tokens_out > 0
        assert annotation.score.judge_config_hash == gold.core.stamp.config_hash
        assert annotation.score.template_id == "pointwise-reasoning-v1"


def test_the_cache_outlives_the_annotator(
    gold: Served, serve: Callable[[GoldAnnotatorCore], Served], builtin_engine: TransformersEngine
):
    batch = request(*(sample(i) for i in range(2)))
    first = gold.stub.Annotate(batch, timeout=600)
    gold.close()

    later = serve(build_gold_annotator(experiment(), redis=gold.redis, engine=builtin_engine))
    again = later.stub.Annotate(batch, timeout=600)
    assert later.core.model_calls == 0
    assert [a.score for a in again.annotations] == [a.score for a in first.annotations]

    other_budget = serve(
        build_gold_annotator(experiment(max_tokens=32), redis=gold.redis, engine=builtin_engine)
    )
    changed = other_budget.stub.Annotate(batch, timeout=600)
    assert other_budget.core.model_calls >= 1  # another config hash: not the same judgement
    assert not any(a.cached for a in changed.annotations)


def test_annotate_stream_with_three_requests(gold: Served):
    requests = [
        request(sample(0, prefix="a")),
        request(sample(1, prefix="b"), sample(2, prefix="b")),
        request(sample(3, prefix="c"), sample(4, prefix="c")),
    ]
    answers = list(gold.stub.AnnotateStream(iter(requests), timeout=600))
    assert sorted(a.score.sample_id for a in answers) == ["a0", "b1", "b2", "c3", "c4"]
    by_id = {a.score.sample_id: a for a in answers}
    assert all(a.gold_reasoning for a in answers)
    calls = gold.core.model_calls
    assert calls >= 1

    again = list(gold.stub.AnnotateStream(iter(requests), timeout=600))
    assert all(a.cached for a in again)
    assert {a.score.sample_id: a.score for a in again} == {sid: a.score for sid, a in by_id.items()}
    assert gold.core.model_calls == calls


def _field_errors(error: grpc.RpcError) -> list[tuple[str, str]]:
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
    return [(d.field, d.reason) for d in error_details(error)]


@pytest.mark.parametrize(
    "bad, expected",
    [
        (request(), ("samples", "REQUIRED")),
        (request(sample(0), sample(1, response="   ")), ("samples[1].response", "REQUIRED")),
        (request(sample(0, response="word " * 9000)), ("samples[0].response", "TOO_LONG")),
        (
            request(sample(0), per_sample_timeout=Duration(seconds=-5)),
            ("per_sample_timeout", "OUT_OF_RANGE"),
        ),
    ],
    ids=["empty", "blank-response", "too-long-for-the-context", "negative-timeout"],
)
def test_bad_requests_are_invalid_argument_naming_the_field(
    gold: Served, bad: gold_annotator_pb2.AnnotateRequest, expected: tuple[str, str]
):
    with pytest.raises(grpc.RpcError) as raised:
        gold.stub.Annotate(bad, timeout=600)
    assert _field_errors(raised.value) == [expected]
    assert gold.core.model_calls == 0


def test_non_utf8_text_is_invalid_argument_naming_the_field(gold: Served):
    good = request(sample(0)).SerializeToString()
    bad = good.replace(b"Paris.", b"Par\xffs.")
    annotate = gold.channel.unary_unary(
        "/judgelab.v1.GoldAnnotator/Annotate",
        request_serializer=None,
        response_deserializer=gold_annotator_pb2.AnnotateResponse.FromString,
    )
    with pytest.raises(grpc.RpcError) as raised:
        annotate(bad, timeout=60)
    assert _field_errors(raised.value) == [("samples[0].response", "INVALID_UTF8")]
    assert gold.stub.Annotate(request(sample(2)), timeout=600).annotations[0].score.judge == "gold"


@pytest.mark.llamacpp
def test_gold_on_an_openai_compatible_server_is_cached_the_same_way(
    llamacpp_base_url: str, client: redis.Redis, serve: Callable[[GoldAnnotatorCore], Served]
):
    model = {
        "engine": "openai",
        "name": MODEL_ALIAS,
        "base_url": llamacpp_base_url,
        "context_length": N_CTX,
        "timeout_s": 120,
        "max_retries": 1,
        "extra_body": LLAMACPP_PLAIN_SAMPLING,
    }
    spec = experiment(model=model, reasoning_effort=None)
    gold = serve(build_gold_annotator(spec, redis=client))  # builds (and owns) the openai engine
    batch = request(*(sample(i) for i in range(3)))

    first = gold.stub.Annotate(batch, timeout=600)
    calls = gold.core.model_calls
    second = gold.stub.Annotate(batch, timeout=600)

    assert calls >= 1 and gold.core.model_calls == calls
    assert [a.cached for a in second.annotations] == [True] * 3
    assert [a.score for a in second.annotations] == [a.score for a in first.annotations]
    assert all(a.score.invalid_reason != "engine_error" for a in first.annotations)
    assert all(a.gold_reasoning.strip() for a in second.annotations)
    assert len(_cached_keys(client)) == 3
