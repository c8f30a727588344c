"""The RolloutGenerator gRPC service on 127.0.0.1 with the tiny model: Generate, Status, and
INVALID_ARGUMENT naming the field for every kind of bad input."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from judgelab.api.v1 import common_pb2, rollout_pb2, rollout_pb2_grpc
from judgelab.engines.transformers_engine import TransformersEngine
from judgelab.rollout.generator import GenerationDefaults, RolloutGenerator
from judgelab.rollout.metrics import RolloutMetrics
from judgelab.rollout.policy import PolicyHolder
from judgelab.rollout.server import start_rollout_generator_server
from judgelab.serving.errors import error_details

USER, ASSISTANT = common_pb2.ROLE_USER, common_pb2.ROLE_ASSISTANT
DEFAULTS = GenerationDefaults(temperature=0.9, top_p=1.0, max_new_tokens=6, group_size=3)


@pytest.fixture(scope="module")
def stub(tiny_engine: TransformersEngine) -> Iterator[rollout_pb2_grpc.RolloutGeneratorStub]:
    metrics = RolloutMetrics()
    generator = RolloutGenerator(PolicyHolder(tiny_engine), DEFAULTS, metrics=metrics)
    server = start_rollout_generator_server(generator, metrics=metrics, queue_lag=lambda: 7)
    channel = grpc.insecure_channel(server.address)
    yield rollout_pb2_grpc.RolloutGeneratorStub(channel)
    channel.close()
    server.stop(1)


def _prompt(prompt_id: str = "p", *turns: tuple[int, str]) -> rollout_pb2.Prompt:
    turns = turns or ((USER, "Name a colour."),)
    return rollout_pb2.Prompt(
        id=prompt_id, messages=[common_pb2.ChatMessage(role=r, content=c) for r, c in turns]
    )


def _request(**fields: Any) -> rollout_pb2.GenerateRequest:
    fields.setdefault("prompts", [_prompt("a"), _prompt("b")])
    return rollout_pb2.GenerateRequest(**fields)


def test_generate_returns_one_group_per_prompt_with_logprobs(
    stub: rollout_pb2_grpc.RolloutGeneratorStub,
) -> None:
    response = stub.Generate(_request(n=2, return_logprobs=True), timeout=60)
    assert [g.prompt_id for g in response.groups] == ["a", "b"]
    for group in response.groups:
        assert [r.id for r in group.rollouts] == [
            f"{group.prompt_id}:0:0",
            f"{group.prompt_id}:0:1",
        ]
        for rollout in group.rollouts:
            assert len(rollout.token_ids) == len(rollout.logprobs) > 0
            assert all(lp <= 0 for lp in rollout.logprobs)
            assert rollout.policy_version == 0 and rollout.prompt_tokens > 0
            assert rollout.finish_reason in (
                rollout_pb2.FINISH_REASON_STOP,
                rollout_pb2.FINISH_REASON_LENGTH,
            )


def test_defaults_apply_and_logprobs_are_left_out_unless_asked(
    stub: rollout_pb2_grpc.RolloutGeneratorStub,
) -> None:
    response = stub.Generate(_request(prompts=[_prompt("only")]), timeout=60)
    (group,) = response.groups
    assert len(group.rollouts) == DEFAULTS.group_size
    assert all(not r.token_ids and not r.logprobs for r in group.rollouts)
    with_ids = stub.Generate(_request(prompts=[_prompt("only")], return_logprobs=True), timeout=60)
    for rollout in with_ids.groups[0].rollouts:
        assert len(rollout.token_ids) <= DEFAULTS.max_new_tokens
        if rollout.finish_reason == rollout_pb2.FINISH_REASON_LENGTH:
            assert len(rollout.token_ids) == DEFAULTS.max_new_tokens


def test_status_reports_version_totals_and_lag(
    stub: rollout_pb2_grpc.RolloutGeneratorStub,
) -> None:
    before = stub.Status(rollout_pb2.GeneratorStatusRequest(), timeout=10)
    stub.Generate(_request(n=1), timeout=60)
    after = stub.Status(rollout_pb2.GeneratorStatusRequest(), timeout=10)
    assert after.ready and after.policy.version == 0 and after.queue_lag == 7
    assert after.rollouts_produced_total == before.rollouts_produced_total + 2
    assert after.dropped_stale_total == 0


@pytest.mark.parametrize(
    ("request_", "field", "reason"),
    [
        (_request(prompts=[]), "prompts", "REQUIRED"),
        (_request(prompts=[_prompt("x"), _prompt("x")]), "prompts[1].id", "DUPLICATE_ID"),
        (_request(prompts=[_prompt(" ")]), "prompts[0].id", "REQUIRED"),
        (_request(n=-1), "n", "OUT_OF_RANGE"),
        (_request(n=5000), "n", "OUT_OF_RANGE"),
        (
            _request(sampling=rollout_pb2.SamplingParams(temperature=-0.1)),
            "sampling.temperature",
            "OUT_OF_RANGE",
        ),
        (
            _request(sampling=rollout_pb2.SamplingParams(temperature=float("nan"))),
            "sampling.temperature",
            "OUT_OF_RANGE",
        ),
        (
            _request(sampling=rollout_pb2.SamplingParams(top_p=0.0)),
            "sampling.top_p",
            "OUT_OF_RANGE",
        ),
        (
            _request(sampling=rollout_pb2.SamplingParams(top_p=1.5)),
            "sampling.top_p",
            "OUT_OF_RANGE",
        ),
        (
            _request(sampling=rollout_pb2.SamplingParams(max_new_tokens=0)),
            "sampling.max_new_tokens",
            "OUT_OF_RANGE",
        ),
        (_request(sampling=rollout_pb2.SamplingParams(stop=[""])), "sampling.stop[0]", "REQUIRED"),
        (
            _request(prompts=[_prompt("p", (USER, "Hi"), (ASSISTANT, "Hello!"))]),
            "prompts[0].messages[1].role",
            "LAST_TURN_NOT_USER",
        ),
        (_request(prompts=[rollout_pb2.Prompt(id="p")]), "prompts[0].messages", "REQUIRED"),
        (
            _request(prompts=[_prompt("p", (0, "Hi"))]),
            "prompts[0].messages[0].role",
            "INVALID_ROLE",
        ),
        (
            _request(prompts=[_prompt("p", (USER, "  "))]),
            "prompts[0].messages[0].content",
            "REQUIRED",
        ),
        (_request(prompts=[_prompt("p", (USER, "x " * 600))]), "prompts[0].messages", "TOO_LONG"),
    ],
)
def test_bad_requests_fail_with_invalid_argument_naming_the_field(
    stub: rollout_pb2_grpc.RolloutGeneratorStub,
    request_: rollout_pb2.GenerateRequest,
    field: str,
    reason: str,
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.Generate(request_, timeout=30)
    call = caught.value
    assert call.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [(d.field, d.reason) for d in error_details(call)] == [(field, reason)]
