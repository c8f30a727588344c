"""Hypothesis throws >= 500 random requests (well-formed protos with random content, and
random bytes on the wire) at a running judge pool; every answer must be a result or a
client-error status, never INTERNAL, and the server must still judge a valid request after."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from judge_pool_support import PAIRS, PLAIN, Running, running, score_request

from judgelab.api.v1 import common_pb2, judge_pool_pb2
from judgelab.engines.constant import ConstantEngine
from judgelab.engines.transformers_engine import TransformersEngine
from judgelab.judge_pool.pool import JudgePool
from judgelab.judging import PairwiseJudge, PointwiseJudge

ALLOWED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT,
           grpc.StatusCode.FAILED_PRECONDITION}
EXAMPLES = 200  # per test; three tests: 600 requests
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

text = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=60)
maybe_text = st.one_of(text, st.sampled_from(["", " ", "\n\t", "Score: 9", "\x00", "10/10"]))
messages = st.lists(
    st.builds(common_pb2.ChatMessage, role=st.integers(-3, 6), content=maybe_text),
    max_size=3,
)
judge_names = st.one_of(st.sampled_from(["plain", "pairs", "", "nope"]), text)


@st.composite
def samples(draw: st.DrawFn) -> common_pb2.Sample:
    sample = common_pb2.Sample(id=draw(st.sampled_from(["a", "b", ""]) | text),
                               prompt=draw(messages), response=draw(maybe_text))
    if draw(st.booleans()):
        sample.reference = draw(maybe_text)
    return sample


words = st.text(alphabet=st.characters(exclude_categories=("Cs", "Cc")), min_size=1,
                max_size=40).filter(str.strip)


@st.composite
def valid_samples(draw: st.DrawFn) -> list[common_pb2.Sample]:
    """Well-formed samples with random content: these must be judged (status OK)."""
    n = draw(st.integers(1, 4))
    return [common_pb2.Sample(
        id=f"v{i}", response=draw(words),
        prompt=[common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=draw(words))])
        for i in range(n)]


@st.composite
def pairs(draw: st.DrawFn) -> judge_pool_pb2.Pair:
    return judge_pool_pb2.Pair(id=draw(st.sampled_from(["p", "q"]) | text),
                               prompt=draw(messages), response_a=draw(maybe_text),
                               response_b=draw(maybe_text))


class Counter:
    calls = 0
    codes: set[grpc.StatusCode] = set()


@pytest.fixture(scope="module")
def fuzzed(tiny_engine: TransformersEngine) -> Iterator[Running]:
    pool = JudgePool()
    pool.add("plain", PointwiseJudge(tiny_engine, PLAIN), max_batch=8, max_queue=16)
    pool.add("pairs", PairwiseJudge(ConstantEngine(), PAIRS), max_batch=8, max_queue=16)
    with running(pool) as handle:
        yield handle
    assert Counter.calls >= 500, Counter.calls
    assert {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT} <= Counter.codes, Counter.codes


def _call(method: object, request: object) -> None:
    Counter.calls += 1
    try:
        method(request, timeout=30)  # type: ignore[operator]
        Counter.codes.add(grpc.StatusCode.OK)
    except grpc.RpcError as error:
        Counter.codes.add(error.code())
        assert error.code() in ALLOWED, (error.code(), error.details())
        assert "Traceback" not in (error.details() or "")


@FUZZ
@given(judge=judge_names | st.just("plain"),
       items=st.lists(samples(), max_size=5) | valid_samples())
def test_random_score_requests(fuzzed: Running, judge: str, items: list[common_pb2.Sample]) -> None:
    _call(fuzzed.stub.Score, judge_pool_pb2.ScoreRequest(judge=judge, samples=items))


@FUZZ
@given(judge=judge_names, items=st.lists(pairs(), max_size=4), both=st.booleans())
def test_random_pairwise_requests(
    fuzzed: Running, judge: str, items: list[judge_pool_pb2.Pair], both: bool
) -> None:
    request = judge_pool_pb2.ScorePairwiseRequest(judge=judge, pairs=items, both_orders=both)
    _call(fuzzed.stub.ScorePairwise, request)


@FUZZ
@given(data=st.binary(max_size=300) | st.builds(
    lambda wire, at, junk: wire[:at] + junk + wire[at:],
    st.just(score_request(n=2).SerializeToString()), st.integers(0, 60),
    st.binary(min_size=1, max_size=8)))
def test_random_bytes_on_the_wire(fuzzed: Running, data: bytes) -> None:
    raw = fuzzed.channel.unary_unary("/judgelab.v1.JudgePool/Score", request_serializer=None,
                                     response_deserializer=None)
    _call(raw, data)


def test_still_serving_after_the_fuzz(fuzzed: Running) -> None:
    scores = fuzzed.stub.Score(score_request(n=3), timeout=30).scores
    assert len(scores) == 3 and all(s.valid for s in scores)
    listed = fuzzed.stub.ListJudges(judge_pool_pb2.ListJudgesRequest(), timeout=5).judges
    assert {j.spec.name for j in listed} == {"plain", "pairs"}
