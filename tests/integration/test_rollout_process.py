"""`judgelab serve rollout-generator` as a real process with the built-in model (the chart's
command line): it announces its ports and arms, answers Generate and Status, turns a prompt on
the Redis stream into a rollout group, serves /metrics, and exits 0 on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from support.redis_server import RedisServer

from judgelab.api.v1 import common_pb2, rollout_pb2, rollout_pb2_grpc
from judgelab.engines.base import ChatMessage
from judgelab.queues import connect
from judgelab.queues.messages import PromptMessage, RolloutGroup
from judgelab.queues.names import StreamNames

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart.yaml"
NAMES = StreamNames("quickstart")


def test_serve_rollout_generator_end_to_end(
    builtin_dir: Path, redis_url: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "judgelab.cli",
            "serve",
            "rollout-generator",
            str(QUICKSTART),
            "--host=127.0.0.1",
            "--port=0",
            "--metrics-port=0",
            "--grace-s=30",
            "--redis-url",
            redis_url,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            pytest.fail(f"did not start: {process.stderr.read() if process.stderr else ''}")
        announced = json.loads(line)
        assert announced["service"] == "rollout-generator"
        assert announced["arms"] == ["plain", "reasoning"]
        _check_grpc(announced["grpc"])
        _check_stream(redis_url)
        metrics = (
            urllib.request.urlopen(f"http://127.0.0.1:{announced['metrics']}/metrics", timeout=10)
            .read()
            .decode()
        )
        assert 'judgelab_rollouts_total{arm="plain"' in metrics
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _check_grpc(address: str) -> None:
    with grpc.insecure_channel(address) as channel:
        stub = rollout_pb2_grpc.RolloutGeneratorStub(channel)
        question = common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content="What is 2 + 2?")
        response = stub.Generate(
            rollout_pb2.GenerateRequest(
                prompts=[rollout_pb2.Prompt(id="q", messages=[question])],
                n=2,
                sampling=rollout_pb2.SamplingParams(max_new_tokens=8, seed=1),
                return_logprobs=True,
            ),
            timeout=120,
        )
        (group,) = response.groups
        assert [r.id for r in group.rollouts] == ["q:0:0", "q:0:1"]
        assert all(0 < len(r.token_ids) == len(r.logprobs) <= 8 for r in group.rollouts)
        status = stub.Status(rollout_pb2.GeneratorStatusRequest(), timeout=10)
        assert status.ready and status.policy.version == 0
        assert status.policy.base_model == "builtin:smollm2-135m-instruct"
        assert status.rollouts_produced_total == 2


def _check_stream(redis_url: str) -> None:
    client = connect(redis_url)
    try:
        message = PromptMessage("s0-p1", [ChatMessage("user", "Name a fruit.")], arm="plain")
        client.xadd(NAMES.prompts, message.to_fields())
        until = time.monotonic() + 240
        while not client.xlen(NAMES.rollouts("plain")):
            assert time.monotonic() < until, "no rollout group arrived"
            time.sleep(0.2)
        (entry,) = client.xrange(NAMES.rollouts("plain"))
        group = RolloutGroup.from_fields(entry[1])
        assert group.group_id == "s0-p1" and group.judge == "plain"
        assert len(group.rollouts) == 4 and group.policy_version == 0  # quickstart group_size
        assert client.xlen(NAMES.rollouts("reasoning")) == 0  # addressed to arm plain only
    finally:
        client.close()
