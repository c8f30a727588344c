"""judgelab.client: typed sync/async clients with TLS + tokens, batching, retries, deadlines."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from api_support import JUDGE_POOL, TOKENS, constant_pool, load_script, write_tokens

from judgelab.api.v1 import judge_pool_pb2, judge_pool_pb2_grpc
from judgelab.client import (
    ApiError,
    AsyncJudgePoolClient,
    ChannelConfig,
    JudgePoolClient,
    Message,
    RetryPolicy,
    Sample,
    ScoreResult,
)
from judgelab.client.retry import call_with_retries
from judgelab.judge_pool.servicer import JudgePoolServicer
from judgelab.serving.errors import Problem, ResourceExhausted, Unavailable, invalid
from judgelab.serving.security import SecurityOptions
from judgelab.serving.server import GrpcServer, ServiceBinding

FAST = RetryPolicy(max_attempts=4, initial_backoff_s=0.01, max_backoff_s=0.05)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GrpcServer, Any, Path]]:
    directory = tmp_path_factory.mktemp("client")
    pki = load_script("dev_certs").make_dev_pki(directory / "pki")
    tokens = write_tokens(directory / "tokens.yaml")
    pool = constant_pool()
    binding = ServiceBinding(
        JudgePoolServicer(pool), judge_pool_pb2_grpc.add_JudgePoolServicer_to_server, JUDGE_POOL
    )
    security = SecurityOptions(tls_cert=pki.server_cert, tls_key=pki.server_key, tokens=tokens)
    server = GrpcServer([binding], security=security).start()
    yield server, pki, tokens
    server.stop(0)
    pool.close()


def _config(secured: tuple[GrpcServer, Any, Path], **extra: Any) -> ChannelConfig:
    server, pki, _ = secured
    values = {"ca_file": pki.ca, "token": TOKENS["team-a"], **extra}
    return ChannelConfig(f"localhost:{server.port}", **values)


def _samples(n: int) -> list[Sample]:
    chat = [Message("system", "Be brief."), Message("user", "Capital of France?")]
    return [
        Sample(
            f"s{i}",
            chat if i % 2 else "Capital of France?",
            f"Paris {i}.",
            reference="Paris" if i % 3 == 0 else None,
        )
        for i in range(n)
    ]


def test_sync_client_returns_typed_results_over_tls_with_a_token(secured: Any) -> None:
    with JudgePoolClient(_config(secured)) as client:
        scores = client.score("constant", _samples(3))
        judges = client.list_judges()
    assert [s.sample_id for s in scores] == ["s0", "s1", "s2"]
    first = scores[0]
    assert isinstance(first, ScoreResult) and first.valid and first.judge == "constant"
    assert first.argmax_score == 7 and abs(sum(first.distribution.values()) - 1) < 1e-6
    assert first.latency_s >= 0 and first.to_dict()["distribution"]["7"] > 0.5
    assert [(j.name, j.protocol) for j in judges] == [("constant", "pointwise")]


def test_score_all_batches_in_chunks_and_keeps_input_order(secured: Any) -> None:
    seen: list[int] = []
    with JudgePoolClient(_config(secured)) as client:
        results = list(
            client.score_all(
                "constant",
                iter(_samples(70)),
                chunk_size=16,
                max_in_flight=3,
                on_progress=seen.append,
            )
        )
    assert [r.sample_id for r in results] == [f"s{i}" for i in range(70)]
    assert seen == [16, 16, 16, 16, 6]


def test_token_from_a_file_and_refusals_are_api_errors(secured: Any, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKENS["team-b"] + "\n")
    with JudgePoolClient(_config(secured, token=None, token_file=token_file)) as client:
        assert client.score("constant", _samples(1))[0].valid
    with JudgePoolClient(_config(secured, token="not-a-valid-token-000"), retry=FAST) as bad:
        with pytest.raises(ApiError) as refused:
            bad.score("constant", _samples(1))
    assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert refused.value.attempts == 1 and refused.value.reasons == ["INVALID_TOKEN"]
    assert TOKENS["team-b"] not in repr(_config(secured, token=TOKENS["team-b"]))


def test_invalid_requests_are_not_retried_and_carry_field_details(secured: Any) -> None:
    with JudgePoolClient(_config(secured), retry=FAST) as client:
        with pytest.raises(ApiError) as refused:
            client.score("constant", [Sample("x", "Capital?", "   ")])
        with pytest.raises(ApiError) as unknown:
            client.score("no-such-judge", _samples(1))
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.attempts == 1
    assert [(d.field, d.reason) for d in refused.value.details] == [
        ("samples[0].response", "REQUIRED")
    ]
    # (judge_pool.proto documents NOT_FOUND for an unknown judge; the pool says this.)
    assert unknown.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [d.field for d in unknown.value.details] == ["judge"]


def test_async_client_scores_and_batches(secured: Any) -> None:
    async def run() -> tuple[list[ScoreResult], list[ScoreResult], int]:
        async with AsyncJudgePoolClient(_config(secured)) as client:
            one = await client.score("constant", _samples(2))
            many = await client.score_all("constant", _samples(45), chunk_size=10, max_in_flight=3)
            judges = await client.list_judges()
            return one, many, len(judges)

    one, many, judges = asyncio.run(run())
    assert [s.sample_id for s in one] == ["s0", "s1"] and judges == 1
    assert [s.sample_id for s in many] == [f"s{i}" for i in range(45)]


class FlakyPool(judge_pool_pb2_grpc.JudgePoolServicer):
    """Fails the first ``failures`` ListJudges calls with ``error``."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    def ListJudges(self, request: Any, context: Any) -> Any:  # noqa: N802
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return judge_pool_pb2.ListJudgesResponse()


@pytest.mark.parametrize(
    ("error", "failures", "succeeds", "calls"),
    [
        (Unavailable(Problem("", "RESTARTING", "restarting")), 2, True, 3),
        (ResourceExhausted(Problem("", "QUEUE_FULL", "full"), retry_after_s=0.02), 3, True, 4),
        (ResourceExhausted(Problem("", "QUEUE_FULL", "full"), retry_after_s=0.01), 9, False, 4),
        (invalid("judge", "REQUIRED", "name the judge"), 1, False, 1),
    ],
)
def test_retries_only_unavailable_and_resource_exhausted(
    error: Exception, failures: int, succeeds: bool, calls: int
) -> None:
    flaky = FlakyPool(failures, error)
    binding = ServiceBinding(flaky, judge_pool_pb2_grpc.add_JudgePoolServicer_to_server, JUDGE_POOL)
    server = GrpcServer([binding], security=SecurityOptions()).start()
    try:
        with JudgePoolClient(server.address, retry=FAST) as client:
            if succeeds:
                assert client.list_judges() == []
            else:
                with pytest.raises(ApiError) as failed:
                    client.list_judges()
                assert failed.value.attempts == calls
    finally:
        server.stop(0)
    assert flaky.calls == calls


class _Refused(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, retry_ms: str | None = None) -> None:
        self._code, self._retry = code, retry_ms

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return "busy"

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("grpc-retry-pushback-ms", self._retry),) if self._retry else ()


def test_pauses_honour_the_server_hint_and_the_deadline() -> None:
    pauses: list[float] = []
    attempts: list[float | None] = []

    def call(remaining: float | None) -> str:
        attempts.append(remaining)
        if len(attempts) < 3:
            raise _Refused(grpc.StatusCode.RESOURCE_EXHAUSTED, "250")
        return "done"

    assert (
        call_with_retries(call, FAST, idempotent=True, timeout_s=10, sleep=pauses.append) == "done"
    )
    assert pauses == [0.25, 0.25] and all(r is not None and r <= 10 for r in attempts)
    pauses.clear()
    with pytest.raises(ApiError) as late:  # a 5 s hint does not fit a 1 s deadline
        call_with_retries(
            lambda _r: _raise(_Refused(grpc.StatusCode.UNAVAILABLE, "5000")),
            FAST,
            idempotent=True,
            timeout_s=1,
            sleep=pauses.append,
        )
    assert pauses == [] and late.value.retry_after_s == 5.0
    with pytest.raises(ApiError):  # not idempotent: never retried
        call_with_retries(
            lambda _r: _raise(_Refused(grpc.StatusCode.UNAVAILABLE)),
            FAST,
            idempotent=False,
            timeout_s=None,
            sleep=pauses.append,
        )
    assert pauses == []


def _raise(error: Exception) -> Any:
    raise error


def test_channel_config_from_the_environment(tmp_path: Path) -> None:
    env = {
        "JUDGELAB_CLIENT_CA_FILE": "/s/ca.crt",
        "JUDGELAB_CLIENT_TOKEN": "t" * 20,
        "JUDGELAB_CLIENT_SERVER_NAME": "judge-pool.judgelab.svc",
    }
    config = ChannelConfig.from_env("judge-pool:50051", env)
    assert config.secure and config.ca_file == Path("/s/ca.crt")
    assert config.metadata() == (("authorization", "Bearer " + "t" * 20),)
    assert ("grpc.ssl_target_name_override", "judge-pool.judgelab.svc") in config.options()
    assert not ChannelConfig.from_env("x:1", {}).secure
    with pytest.raises(ValueError, match="both a client certificate and its key"):
        ChannelConfig("x:1", cert_file=Path("c.pem"))
