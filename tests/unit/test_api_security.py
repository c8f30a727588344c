"""Bearer-token auth, per-client quotas and the request size limit of every judgelab gRPC
server (serving/server.py), on real servers on 127.0.0.1."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from api_support import (
    JUDGE_POOL,
    TOKENS,
    constant_pool,
    score_once,
    score_request,
    start_pool_server,
    status_of,
    write_tokens,
)
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from judgelab.api.v1 import judge_pool_pb2, judge_pool_pb2_grpc
from judgelab.judge_pool.pool import JudgePool
from judgelab.serving.errors import error_details
from judgelab.serving.security import SecurityOptions
from judgelab.serving.server import GrpcServer, ServiceBinding

BEARER_A = (("authorization", f"Bearer {TOKENS['team-a']}"),)
BEARER_B = (("authorization", f"Bearer {TOKENS['team-b']}"),)


@pytest.fixture(scope="module")
def pool() -> Iterator[JudgePool]:
    built = constant_pool()
    yield built
    built.close()


@pytest.fixture
def tokens(tmp_path: Path) -> Path:
    return write_tokens(tmp_path / "tokens.yaml")


def _serve(pool: JudgePool, **security: Any) -> GrpcServer:
    return start_pool_server(pool, SecurityOptions(**security))


# -- bearer tokens -----------------------------------------------------------------------
def test_token_auth_refuses_missing_and_wrong_tokens(pool: JudgePool, tokens: Path) -> None:
    server = _serve(pool, tokens=tokens)
    try:
        with grpc.insecure_channel(server.address) as channel:
            assert score_once(channel, BEARER_A).scores[0].valid
            assert score_once(channel, BEARER_B).scores[0].valid
            cases = {
                "MISSING_TOKEN": None,
                "INVALID_TOKEN": (("authorization", "Bearer " + "x" * 30),),
            }
            for reason, metadata in cases.items():
                with pytest.raises(grpc.RpcError) as refused:
                    score_once(channel, metadata)
                assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
                assert [d.reason for d in error_details(refused.value)] == [reason]
    finally:
        server.stop(0)


def test_health_is_open_but_reflection_needs_a_token(pool: JudgePool, tokens: Path) -> None:
    server = _serve(pool, tokens=tokens)
    try:
        with grpc.insecure_channel(server.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            reply = health.Check(health_pb2.HealthCheckRequest(service=JUDGE_POOL), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            ask = reflection_pb2.ServerReflectionRequest(list_services="")

            def reflect(metadata: Any) -> list[str]:
                replies = stub.ServerReflectionInfo(iter([ask]), metadata=metadata, timeout=5)
                return [s.name for r in replies for s in r.list_services_response.service]

            assert status_of(lambda: reflect(None)) == grpc.StatusCode.UNAUTHENTICATED
            assert JUDGE_POOL in reflect(BEARER_A)
    finally:
        server.stop(0)


def test_unauthenticated_garbage_is_refused_before_parsing(pool: JudgePool, tokens: Path) -> None:
    server = _serve(pool, tokens=tokens)
    garbage = b"\x0a\x05\xff\xfe\xfd\xfc\xfb\x12\x99"
    try:
        with grpc.insecure_channel(server.address) as channel:
            raw = channel.unary_unary(f"/{JUDGE_POOL}/Score")
            assert status_of(lambda: raw(garbage, timeout=5)) == grpc.StatusCode.UNAUTHENTICATED
            assert status_of(lambda: raw(garbage, metadata=BEARER_A, timeout=5)) == (
                grpc.StatusCode.INVALID_ARGUMENT
            )
            unknown = channel.unary_unary(f"/{JUDGE_POOL}/NoSuchMethod")
            assert status_of(lambda: unknown(b"", timeout=5)) == grpc.StatusCode.UNAUTHENTICATED
            assert status_of(lambda: unknown(b"", metadata=BEARER_A, timeout=5)) == (
                grpc.StatusCode.UNIMPLEMENTED
            )
    finally:
        server.stop(0)


def test_tokens_never_reach_the_logs(
    pool: JudgePool, tokens: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "Bearer wrong-" + "z" * 24
    server = _serve(pool, tokens=tokens, rate_per_s=1000)
    try:
        with grpc.insecure_channel(server.address) as channel:
            score_once(channel, BEARER_A)
            status_of(lambda: score_once(channel, (("authorization", wrong),)))
    finally:
        server.stop(0)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "token auth" in logged  # the startup line names the tokens file ...
    for secret in [*TOKENS.values(), wrong]:
        assert secret not in logged  # ... never a token


def test_a_rotated_secret_directory_takes_effect_without_restart(tmp_path: Path) -> None:
    from judgelab.serving.auth import TokenStore

    # The layout the kubelet writes: files are links into a ..data version directory.
    secret = tmp_path / "secret"
    version = secret / "..2026_01_01"
    version.mkdir(parents=True)
    (version / "team-a").write_text(TOKENS["team-a"] + "\n")
    (secret / "..data").symlink_to(version.name)
    (secret / "team-a").symlink_to("..data/team-a")
    store = TokenStore(secret, reload_every_s=0)
    assert store.clients == ["team-a"]
    assert store.client_for(TOKENS["team-a"]) == "team-a"
    rotated = secret / "..2026_02_01"
    rotated.mkdir()
    (rotated / "team-a").write_text("rotated-token-for-team-a-000")
    (secret / "..data").unlink()
    (secret / "..data").symlink_to(rotated.name)
    assert store.client_for(TOKENS["team-a"]) is None
    assert store.client_for("rotated-token-for-team-a-000") == "team-a"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("team-a: short\n", "shorter than"),
        ("- a\n- b\n", "must map"),
        (f"team-a: {TOKENS['team-a']}\nteam-b: {TOKENS['team-a']}\n", "share a token"),
        ("team-a: [1]\n", "not a string"),
        ("{}\n", "names no client"),
    ],
)
def test_bad_token_files_are_refused_without_showing_tokens(
    tmp_path: Path, content: str, problem: str
) -> None:
    from judgelab.serving.auth import TokenFileError, load_tokens

    path = tmp_path / "tokens.yaml"
    path.write_text(content)
    with pytest.raises(TokenFileError, match=problem) as refused:
        load_tokens(path)
    assert TOKENS["team-a"] not in str(refused.value) and "short\n" not in str(refused.value)


# -- quotas and limits -------------------------------------------------------------------
def test_rate_limit_is_per_client_with_retry_info(pool: JudgePool, tokens: Path) -> None:
    server = _serve(pool, tokens=tokens, rate_per_s=0.5, burst=2)
    try:
        with grpc.insecure_channel(server.address) as channel:
            score_once(channel, BEARER_A)
            score_once(channel, BEARER_A)
            with pytest.raises(grpc.RpcError) as refused:
                score_once(channel, BEARER_A)
            assert score_once(channel, BEARER_B).scores  # team-b has its own bucket
    finally:
        server.stop(0)
    error = refused.value
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    trailers = dict(error.trailing_metadata())
    assert 1000 <= int(trailers["grpc-retry-pushback-ms"]) <= 2000
    status = rpc_status.from_call(error)
    assert status is not None
    infos = [d for d in status.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
    retry = error_details_pb2.RetryInfo()
    assert len(infos) == 1 and infos[0].Unpack(retry)
    assert 1.0 <= retry.retry_delay.ToNanoseconds() / 1e9 <= 2.0
    assert [d.reason for d in error_details(error)] == ["RATE_LIMITED"]


class SlowPool(judge_pool_pb2_grpc.JudgePoolServicer):
    def __init__(self) -> None:
        self.inside = threading.Event()
        self.release = threading.Event()

    def ListJudges(self, request: Any, context: Any) -> Any:  # noqa: N802
        self.inside.set()
        self.release.wait(5)
        return judge_pool_pb2.ListJudgesResponse()


def test_concurrency_quota_refuses_the_call_over_it(tokens: Path) -> None:
    slow = SlowPool()
    binding = ServiceBinding(slow, judge_pool_pb2_grpc.add_JudgePoolServicer_to_server, JUDGE_POOL)
    security = SecurityOptions(tokens=tokens, max_concurrent=1)
    server = GrpcServer([binding], security=security).start()
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = judge_pool_pb2_grpc.JudgePoolStub(channel)
            first = stub.ListJudges.future(
                judge_pool_pb2.ListJudgesRequest(), metadata=BEARER_A, timeout=10
            )
            assert slow.inside.wait(5)

            def again(metadata: Any) -> Any:
                return stub.ListJudges(
                    judge_pool_pb2.ListJudgesRequest(), metadata=metadata, timeout=5
                )

            assert status_of(lambda: again(BEARER_A)) == grpc.StatusCode.RESOURCE_EXHAUSTED
            slow.release.set()
            assert status_of(lambda: again(BEARER_B)) == grpc.StatusCode.OK
            first.result()
            assert status_of(lambda: again(BEARER_A)) == grpc.StatusCode.OK  # slot given back
    finally:
        slow.release.set()
        server.stop(0)


def test_requests_over_the_size_limit_are_refused(pool: JudgePool) -> None:
    server = _serve(pool, max_request_bytes=4096)
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = judge_pool_pb2_grpc.JudgePoolStub(channel)
            assert stub.Score(score_request(text="ok"), timeout=5).scores
            big = score_request(text="x" * 8192)
            assert status_of(lambda: stub.Score(big, timeout=5)) == (
                grpc.StatusCode.RESOURCE_EXHAUSTED
            )
    finally:
        server.stop(0)
