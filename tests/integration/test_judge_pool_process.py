"""`judgelab serve judge-pool` as a real process with the built-in model: it announces its
ports, serves Score, health and /metrics, and on SIGTERM finishes in-flight work, then exits 0."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support.redis_server import RedisServer

from judgelab.api.v1 import common_pb2, judge_pool_pb2, judge_pool_pb2_grpc
from judgelab.engines.base import ChatMessage
from judgelab.queues import connect
from judgelab.queues.messages import Rollout, RolloutGroup, ScoredGroup
from judgelab.queues.names import StreamNames

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart.yaml"


def _request(n: int) -> judge_pool_pb2.ScoreRequest:
    question = common_pb2.ChatMessage(role=common_pb2.ROLE_USER,
                                      content="What is the capital of France?")
    answers = ["Paris.", "London is the capital of France.", "I do not know."]
    return judge_pool_pb2.ScoreRequest(judge="plain", samples=[
        common_pb2.Sample(id=f"s{i}", prompt=[question], response=answers[i % 3])
        for i in range(n)
    ])


@pytest.fixture(scope="module")
def served(
    builtin_dir: Path, redis_server: RedisServer
) -> Iterator[tuple[subprocess.Popen[str], dict[str, object]]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "judgelab.cli", "serve", "judge-pool", str(QUICKSTART),
         "--judge", "plain", "--grace-s", "60", "--redis-url", redis_server.url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.kill()
        pytest.fail(f"judge pool did not start: {process.stderr.read() if process.stderr else ''}")
    yield process, json.loads(line)
    if process.poll() is None:
        process.kill()
        process.wait()


def test_announces_ports_and_judges(
    served: tuple[subprocess.Popen[str], dict[str, object]],
) -> None:
    _, announced = served
    assert announced["service"] == "judge-pool" and announced["judges"] == ["plain"]
    assert str(announced["grpc"]).startswith("127.0.0.1:")
    assert announced["streams"] == ["jl:quickstart:rollouts:plain"]


def test_scores_rollout_groups_from_redis(
    served: tuple[subprocess.Popen[str], dict[str, object]], redis_server: RedisServer
) -> None:
    client = connect(redis_server.url)
    names = StreamNames("quickstart")
    group = RolloutGroup(
        group_id="g1", arm="plain", judge="plain", prompt_id="p1",
        prompt=[ChatMessage("user", "What is the capital of France?")], reference=None,
        policy_version=0, rollouts=[Rollout("r0", "Paris."), Rollout("r1", "London.")],
    )
    client.xadd(names.rollouts("plain"), group.to_fields())
    until = time.monotonic() + 120
    while not client.xlen(names.scored("plain")):
        assert time.monotonic() < until, "no scored group within 120 s"
        time.sleep(0.2)
    ((_, fields),) = client.xrange(names.scored("plain"))
    scored = ScoredGroup.from_fields(fields)
    assert scored.rollout_ids == ["r0", "r1"] and all(scored.valid)
    assert all(0 <= reward <= 9 for reward in scored.rewards)


def test_scores_reports_health_and_metrics(
    served: tuple[subprocess.Popen[str], dict[str, object]],
) -> None:
    _, announced = served
    with grpc.insecure_channel(str(announced["grpc"])) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="judgelab.v1.JudgePool"), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        scores = judge_pool_pb2_grpc.JudgePoolStub(channel).Score(_request(3), timeout=120).scores
    assert [s.sample_id for s in scores] == ["s0", "s1", "s2"]
    assert all(s.valid and 0 <= s.expected_score <= 9 and s.score_mass > 0.5 for s in scores)
    metrics = urllib.request.urlopen(
        f"http://127.0.0.1:{announced['metrics']}/metrics", timeout=10).read().decode()
    assert 'judgelab_judgements_total{experiment="quickstart",judge="plain"' in metrics


def test_sigterm_finishes_in_flight_work_then_exits_zero(
    served: tuple[subprocess.Popen[str], dict[str, object]],
) -> None:
    process, announced = served
    with grpc.insecure_channel(str(announced["grpc"])) as channel, \
            ThreadPoolExecutor(1) as threads:
        stub = judge_pool_pb2_grpc.JudgePoolStub(channel)
        in_flight = threads.submit(stub.Score, _request(24), timeout=300)
        time.sleep(1.0)  # the request is queued or running
        process.send_signal(signal.SIGTERM)
        scores = in_flight.result().scores
    assert len(scores) == 24 and all(s.valid for s in scores)
    assert process.wait(timeout=120) == 0
