"""TLS, mutual TLS and the security configuration of every judgelab gRPC server, with a PKI
the test generates (scripts/dev_certs.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from api_support import (
    JUDGE_POOL,
    TOKENS,
    constant_pool,
    load_script,
    score_once,
    start_pool_server,
    status_of,
    tls_channel,
    write_tokens,
)

from judgelab.api.v1 import judge_pool_pb2, judge_pool_pb2_grpc
from judgelab.judge_pool.pool import JudgePool
from judgelab.serving.security import SecurityOptions
from judgelab.serving.server import GrpcServer, ServiceBinding

BEARER_A = (("authorization", f"Bearer {TOKENS['team-a']}"),)
BEARER_B = (("authorization", f"Bearer {TOKENS['team-b']}"),)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Any:
    directory = tmp_path_factory.mktemp("pki")
    dev_certs = load_script("dev_certs")
    built = dev_certs.make_dev_pki(directory, clients=["team-a"])
    other = directory / "other"
    dev_certs.make_ca(other)
    dev_certs.make_client(other, "intruder")
    return built


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


# -- TLS and mutual TLS ------------------------------------------------------------------
def test_tls_serves_only_clients_that_trust_its_ca(pki: Any, pool: JudgePool) -> None:
    server = _serve(pool, tls_cert=pki.server_cert, tls_key=pki.server_key)
    try:
        with tls_channel(server, pki.ca) as channel:
            assert score_once(channel).scores[0].valid
        with grpc.insecure_channel(server.address) as plaintext:
            assert status_of(lambda: score_once(plaintext)) == grpc.StatusCode.UNAVAILABLE
        with tls_channel(server, pki.directory / "other" / "ca.pem") as wrong_ca:
            assert status_of(lambda: score_once(wrong_ca)) == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop(0)


def test_mutual_tls_needs_a_client_certificate_from_the_client_ca(
    pki: Any, pool: JudgePool
) -> None:
    server = _serve(pool, tls_cert=pki.server_cert, tls_key=pki.server_key, tls_client_ca=pki.ca)
    ours = (pki.client_cert("team-a"), pki.client_key("team-a"))
    other = pki.directory / "other"
    theirs = (other / "intruder.pem", other / "intruder.key")
    try:
        with tls_channel(server, pki.ca, ours) as channel:
            assert score_once(channel).scores[0].valid
        with tls_channel(server, pki.ca) as no_cert:
            assert status_of(lambda: score_once(no_cert)) == grpc.StatusCode.UNAVAILABLE
        with tls_channel(server, pki.ca, theirs) as foreign:
            assert status_of(lambda: score_once(foreign)) == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop(0)


def test_renewed_certificate_files_are_picked_up(pki: Any, tmp_path: Path) -> None:
    from judgelab.serving.tls import CertificateFiles

    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_bytes(pki.server_cert.read_bytes())
    key.write_bytes(pki.server_key.read_bytes())
    files = CertificateFiles(cert, key)
    files.credentials()
    assert files.fetch() is None  # unchanged: keep serving the current one
    time.sleep(0.01)
    cert.write_bytes(pki.server_cert.read_bytes())  # a renewal rewrites the files
    assert files.fetch() is not None
    key.write_text("not a key")
    time.sleep(0.01)
    assert files.fetch() is None  # a half-written rotation keeps the old certificate


# -- configuration -----------------------------------------------------------------------
def test_options_come_from_the_environment_and_flags_win(tmp_path: Path) -> None:
    from judgelab.serving.security import SecurityConfigError, security_from_flags

    env = {
        "JUDGELAB_TLS_CERT_FILE": "/s/tls.crt",
        "JUDGELAB_TLS_KEY_FILE": "/s/tls.key",
        "JUDGELAB_API_TOKENS": "/t",
        "JUDGELAB_RATE_LIMIT_PER_S": "2.5",
        "JUDGELAB_MAX_CONCURRENT_PER_CLIENT": "4",
    }
    options = SecurityOptions.from_env(env)
    assert (options.tls_cert, options.tokens, options.rate_per_s) == (
        Path("/s/tls.crt"),
        Path("/t"),
        2.5,
    )
    assert security_from_flags({"max_concurrent": 9}, env).max_concurrent == 9
    assert "TLS" in options.describe() and "2.5 req/s" in options.describe()
    for bad, message in [
        ({"JUDGELAB_TLS_CERT_FILE": "/c"}, "both a certificate and a key"),
        ({"JUDGELAB_RATE_LIMIT_PER_S": "fast"}, "security environment"),
        ({"JUDGELAB_MAX_REQUEST_BYTES": "10"}, "max request bytes"),
    ]:
        with pytest.raises(SecurityConfigError, match=message):
            SecurityOptions.from_env(bad)


def test_servers_without_explicit_options_use_the_process_default(
    pool: JudgePool, tokens: Path
) -> None:
    from judgelab.serving.security import set_process_security

    set_process_security(SecurityOptions(tokens=tokens))
    try:
        binding = ServiceBinding(
            judge_pool_pb2_grpc.JudgePoolServicer(),
            judge_pool_pb2_grpc.add_JudgePoolServicer_to_server,
            JUDGE_POOL,
        )
        server = GrpcServer([binding]).start()  # how rollout/server.py builds its server
    finally:
        set_process_security(SecurityOptions())
    try:
        with grpc.insecure_channel(server.address) as channel:
            list_judges = judge_pool_pb2_grpc.JudgePoolStub(channel).ListJudges
            request = judge_pool_pb2.ListJudgesRequest()
            assert status_of(lambda: list_judges(request, timeout=5)) == (
                grpc.StatusCode.UNAUTHENTICATED
            )
    finally:
        server.stop(0)
