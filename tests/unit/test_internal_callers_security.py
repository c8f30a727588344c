"""The study's own gRPC callers against services with TLS and bearer tokens on: the Annotate
unit's gold client, the Evaluate unit's judge-pool and gold clients, the learner's in-loop
scorers and the runtime's health check, each configured by the JUDGELAB_CLIENT_* variables
alone (a judge pool and a gold annotator with constant engines, a PKI the test generates)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from api_support import ROOT, TOKENS, constant_pool, load_script, start_pool_server, write_tokens

from judgelab.annotator.cache import MemoryCache
from judgelab.annotator.core import GoldAnnotatorCore
from judgelab.annotator.server import SERVICE_NAME as GOLD_SERVICE
from judgelab.annotator.servicer import GoldAnnotatorServicer
from judgelab.api.v1 import gold_annotator_pb2_grpc
from judgelab.client.channel import ChannelConfig
from judgelab.engines.constant import ConstantEngine
from judgelab.judging import JudgeConfig, PointwiseJudge, Sample
from judgelab.learner.eval_clients import EvalItem, GoldScorer, JudgeScorer
from judgelab.runtime.readiness import wait_serving
from judgelab.serving.security import SecurityOptions
from judgelab.serving.server import GrpcServer, ServiceBinding
from judgelab.units.evaluate_scoring import JudgePoolClient, gold_verdicts
from judgelab.units.gold import GoldError
from judgelab.units.gold_grpc import GrpcGold

SAMPLES = [Sample(f"s{i}", "Capital of France?", f"Paris, answer {i}.") for i in range(3)]
ITEMS = [EvalItem(s.id, "Capital of France?", s.response) for s in SAMPLES]
CLIENT_VARIABLES = [name for name in os.environ if name.startswith("JUDGELAB_CLIENT_")]
TOKEN_HINT = "JUDGELAB_CLIENT_TOKEN_FILE"


@dataclass
class Secured:
    pki: Any
    token_file: Path
    pool: GrpcServer
    gold: GrpcServer


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    directory = tmp_path_factory.mktemp("security")
    pki = load_script("dev_certs").make_dev_pki(directory / "pki", clients=[])
    token_file = directory / "client-token"
    token_file.write_text(TOKENS["team-a"] + "\n")
    security = SecurityOptions(
        tls_cert=pki.server_cert,
        tls_key=pki.server_key,
        tokens=write_tokens(directory / "tokens.yaml"),
    )
    pool = constant_pool()
    gold_judge = PointwiseJudge(ConstantEngine(answer="4"), JudgeConfig(name="gold", model="c"))
    core = GoldAnnotatorCore(gold_judge, cache=MemoryCache(), max_batch=8)
    binding = ServiceBinding(
        GoldAnnotatorServicer(core),
        gold_annotator_pb2_grpc.add_GoldAnnotatorServicer_to_server,
        GOLD_SERVICE,
    )
    pool_server = start_pool_server(pool, security)
    gold_server = GrpcServer([binding], security=security, max_workers=8).start()
    yield Secured(pki, token_file, pool_server, gold_server)
    gold_server.stop(0)
    pool_server.stop(0)
    core.close()
    pool.close()


@pytest.fixture
def with_token(secured: Secured, monkeypatch: pytest.MonkeyPatch) -> None:
    _client_env(monkeypatch, JUDGELAB_CLIENT_CA_FILE=str(secured.pki.ca))
    monkeypatch.setenv("JUDGELAB_CLIENT_TOKEN_FILE", str(secured.token_file))


@pytest.fixture
def without_token(secured: Secured, monkeypatch: pytest.MonkeyPatch) -> None:
    _client_env(monkeypatch, JUDGELAB_CLIENT_CA_FILE=str(secured.pki.ca))


def _client_env(monkeypatch: pytest.MonkeyPatch, **variables: str) -> None:
    for name in CLIENT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)


def test_no_client_variables_mean_plaintext_and_no_token(monkeypatch: pytest.MonkeyPatch) -> None:
    _client_env(monkeypatch)
    scorer = JudgeScorer("127.0.0.1:1", "constant", "demo")
    try:
        assert not scorer.config.secure
        assert scorer.config.metadata() == ()
    finally:
        scorer.close()


@pytest.mark.usefixtures("with_token")
def test_annotate_gold_client_labels_over_tls_with_the_token(secured: Secured) -> None:
    gold = GrpcGold(secured.gold.address, "demo")
    try:
        labels = list(gold.label(SAMPLES))
    finally:
        gold.close()
    assert gold.config.secure
    assert sorted(label.sample_id for label in labels) == ["s0", "s1", "s2"]
    assert all(label.valid and label.expected is not None for label in labels)


@pytest.mark.usefixtures("without_token")
def test_annotate_gold_client_without_a_token_says_what_to_set(secured: Secured) -> None:
    gold = GrpcGold(secured.gold.address, "demo", retries=0)
    try:
        with pytest.raises(GoldError) as refused:
            list(gold.label(SAMPLES))
    finally:
        gold.close()
    assert "UNAUTHENTICATED" in str(refused.value)
    assert TOKEN_HINT in str(refused.value)


@pytest.mark.usefixtures("with_token")
def test_evaluate_clients_score_over_tls_with_the_token(secured: Secured) -> None:
    client = JudgePoolClient(secured.pool.address, "demo")
    try:
        proxy = client.score("constant", SAMPLES, lambda _n: None)
    finally:
        client.close()
    gold = gold_verdicts(secured.gold.address, "demo", SAMPLES, lambda _n: None)
    assert set(proxy) == set(gold) == {"s0", "s1", "s2"}
    assert all(v.value is not None and v.reason is None for v in [*proxy.values(), *gold.values()])


@pytest.mark.usefixtures("without_token")
def test_evaluate_judge_pool_client_without_a_token_says_what_to_set(secured: Secured) -> None:
    client = JudgePoolClient(secured.pool.address, "demo", retries=0)
    try:
        with pytest.raises(RuntimeError) as refused:
            client.score("constant", SAMPLES, lambda _n: None)
    finally:
        client.close()
    assert "UNAUTHENTICATED" in str(refused.value)
    assert TOKEN_HINT in str(refused.value)


@pytest.mark.usefixtures("with_token")
def test_learner_scorers_score_over_tls_with_the_token(secured: Secured) -> None:
    gold = GoldScorer(secured.gold.address, "demo")
    proxy = JudgeScorer(secured.pool.address, "constant", "demo")
    try:
        gold_scores, proxy_scores = gold.score(ITEMS), proxy.score(ITEMS)
    finally:
        gold.close()
        proxy.close()
    assert len(gold_scores) == len(proxy_scores) == 3
    assert all(score is not None for score in [*gold_scores, *proxy_scores])


@pytest.mark.usefixtures("without_token")
@pytest.mark.parametrize("which", ["gold", "proxy"])
def test_learner_scorers_without_a_token_say_what_to_set(secured: Secured, which: str) -> None:
    scorer = (
        GoldScorer(secured.gold.address, "demo")
        if which == "gold"
        else JudgeScorer(secured.pool.address, "constant", "demo")
    )
    try:
        with pytest.raises(RuntimeError) as refused:
            scorer.score(ITEMS)
    finally:
        scorer.close()
    assert "UNAUTHENTICATED" in str(refused.value)
    assert TOKEN_HINT in str(refused.value)


def test_a_token_the_service_does_not_hold_is_named_as_such(
    secured: Secured, tmp_path: Path
) -> None:
    wrong = tmp_path / "token"
    wrong.write_text("not-a-token-the-service-knows-0123456789")
    config = ChannelConfig(secured.pool.address, ca_file=secured.pki.ca, token_file=wrong)
    scorer = JudgeScorer(config, "constant", "demo")
    try:
        with pytest.raises(RuntimeError, match="UNAUTHENTICATED.*does not accept"):
            scorer.score(ITEMS)
    finally:
        scorer.close()


@pytest.fixture
def idle_process() -> Iterator[subprocess.Popen[bytes]]:
    """Stands for the service's process: wait_serving only asks whether it is still alive."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process
    process.kill()
    process.wait()


def test_runtime_health_check_uses_tls_when_the_services_serve_it(
    secured: Secured, idle_process: subprocess.Popen[bytes]
) -> None:
    """The runtime's environment (which its services inherit) serves TLS: no token needed."""
    environ = {
        "JUDGELAB_TLS_CERT_FILE": str(secured.pki.server_cert),
        "JUDGELAB_CLIENT_CA_FILE": str(secured.pki.ca),
    }
    for server in (secured.pool, secured.gold):
        assert wait_serving(idle_process, server.address, 10.0, environ) is None


def test_runtime_health_check_in_plaintext_says_to_set_the_ca(
    secured: Secured, idle_process: subprocess.Popen[bytes]
) -> None:
    problem = wait_serving(idle_process, secured.pool.address, 1.0, {})
    assert problem is not None
    assert "was not SERVING" in problem and "JUDGELAB_CLIENT_CA_FILE" in problem


def test_health_probe_command_checks_over_tls_and_fails_on_a_wrong_name(
    secured: Secured,
) -> None:
    """The chart's exec probe: ``python -m judgelab.client.health`` in the service's container."""
    env = {**os.environ, "JUDGELAB_TLS_CERT_FILE": str(secured.pki.server_cert)}
    env = {k: v for k, v in env.items() if not k.startswith("JUDGELAB_CLIENT_")}
    command = [sys.executable, "-m", "judgelab.client.health", secured.pool.address]
    command += ["--ca-file", str(secured.pki.ca), "--timeout", "5"]

    def probe(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*command, *extra], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
        )

    good = probe("--server-name", "localhost")
    assert good.returncode == 0, good.stderr
    assert "SERVING" in good.stdout
    wrong = probe("--server-name", "judge-pool.elsewhere.example")
    assert wrong.returncode == 1
    assert "UNAVAILABLE" in wrong.stderr
