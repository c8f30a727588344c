"""gRPC `judgelab.v1.RolloutGenerator` over a :class:`RolloutGenerator`: validate, convert, call."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import grpc

from judgelab.api.v1 import common_pb2, rollout_pb2, rollout_pb2_grpc
from judgelab.engines.base import SamplingParams
from judgelab.engines.policy_store import PublishedPolicy
from judgelab.rollout.generator import (
    GenerationDefaults,
    GroupResult,
    PromptInput,
    RolloutGenerator,
)
from judgelab.serving.convert import MAX_TEXT_CHARS, prompt_from_proto
from judgelab.serving.errors import invalid

FINISH_REASONS = {
    "stop": rollout_pb2.FINISH_REASON_STOP,
    "length": rollout_pb2.FINISH_REASON_LENGTH,
}
FORMATS = {
    None: common_pb2.WEIGHTS_FORMAT_UNSPECIFIED,
    "lora": common_pb2.WEIGHTS_FORMAT_LORA_ADAPTER,
    "full": common_pb2.WEIGHTS_FORMAT_FULL,
}
#: Most completions one Generate call may ask for (prompts x n).
MAX_COMPLETIONS = 4096


class RolloutGeneratorServicer(rollout_pb2_grpc.RolloutGeneratorServicer):
    def __init__(
        self, generator: RolloutGenerator, queue_lag: Callable[[], int] | None = None
    ) -> None:
        self.generator = generator
        self.queue_lag = queue_lag  # the stream worker's backlog, when it runs

    def Generate(  # noqa: N802 - gRPC method name
        self, request: rollout_pb2.GenerateRequest, context: grpc.ServicerContext
    ) -> rollout_pb2.GenerateResponse:
        prompts = prompts_from_proto(request.prompts)
        n = _group_size(request.n, len(prompts), self.generator.defaults.group_size)
        params = sampling_from_proto(request.sampling, self.generator.defaults)
        groups = self.generator.generate(prompts, n, params)
        return rollout_pb2.GenerateResponse(
            groups=[group_to_proto(g, request.return_logprobs) for g in groups]
        )

    def Status(  # noqa: N802
        self, request: rollout_pb2.GeneratorStatusRequest, context: grpc.ServicerContext
    ) -> rollout_pb2.GeneratorStatus:
        return rollout_pb2.GeneratorStatus(
            policy=policy_to_proto(self.generator.holder.current.info),
            rollouts_produced_total=self.generator.produced_total,
            dropped_stale_total=self.generator.dropped_stale_total,
            queue_lag=self.queue_lag() if self.queue_lag is not None else 0,
            ready=True,
        )


def prompts_from_proto(prompts: Sequence[rollout_pb2.Prompt]) -> list[PromptInput]:
    if not prompts:
        raise invalid("prompts", "REQUIRED", "at least one prompt is required")
    seen: dict[str, int] = {}
    result = []
    for i, prompt in enumerate(prompts):
        if not prompt.id.strip():
            raise invalid(f"prompts[{i}].id", "REQUIRED", "must be a non-empty id")
        if prompt.id in seen:
            raise invalid(
                f"prompts[{i}].id",
                "DUPLICATE_ID",
                f"{prompt.id!r} is also the id of prompts[{seen[prompt.id]}]",
            )
        seen[prompt.id] = i
        messages = prompt_from_proto(prompt.messages, f"prompts[{i}].messages")
        reference = prompt.reference if prompt.HasField("reference") else None
        if reference is not None and len(reference) > MAX_TEXT_CHARS:
            raise invalid(
                f"prompts[{i}].reference",
                "TOO_LONG",
                f"{len(reference)} characters; at most {MAX_TEXT_CHARS}",
            )
        result.append(PromptInput(prompt.id, messages, reference))
    return result


def sampling_from_proto(
    sampling: rollout_pb2.SamplingParams, defaults: GenerationDefaults
) -> SamplingParams:
    temperature = sampling.temperature if sampling.HasField("temperature") else None
    if temperature is not None and not (math.isfinite(temperature) and temperature >= 0):
        raise invalid(
            "sampling.temperature", "OUT_OF_RANGE", f"must be >= 0 (0 = greedy), got {temperature}"
        )
    top_p = sampling.top_p if sampling.HasField("top_p") else None
    if top_p is not None and not 0 < top_p <= 1:
        raise invalid("sampling.top_p", "OUT_OF_RANGE", f"must be in (0, 1], got {top_p}")
    max_new = sampling.max_new_tokens if sampling.HasField("max_new_tokens") else None
    if max_new is not None and max_new < 1:
        raise invalid("sampling.max_new_tokens", "OUT_OF_RANGE", f"must be >= 1, got {max_new}")
    for j, stop in enumerate(sampling.stop):
        if not stop:
            raise invalid(f"sampling.stop[{j}]", "REQUIRED", "stop strings must not be empty")
    seed = sampling.seed if sampling.HasField("seed") else None
    return defaults.params(temperature, top_p, max_new, seed, list(sampling.stop))


def _group_size(n: int, prompts: int, default: int) -> int:
    if n < 0:
        raise invalid("n", "OUT_OF_RANGE", f"must be >= 0 (0 = the server's default), got {n}")
    n = n or default
    if n * prompts > MAX_COMPLETIONS:
        raise invalid(
            "n",
            "OUT_OF_RANGE",
            f"{prompts} prompts x n={n} exceeds {MAX_COMPLETIONS} completions per call",
        )
    return n


def group_to_proto(group: GroupResult, with_logprobs: bool) -> rollout_pb2.RolloutGroup:
    return rollout_pb2.RolloutGroup(
        prompt_id=group.prompt_id,
        rollouts=[
            rollout_pb2.Rollout(
                id=r.id,
                text=r.text,
                token_ids=r.token_ids if with_logprobs else [],
                logprobs=r.logprobs if with_logprobs else [],
                finish_reason=FINISH_REASONS[r.finish_reason],
                policy_version=r.policy_version,
                prompt_tokens=r.prompt_tokens,
            )
            for r in group.rollouts
        ],
    )


def policy_to_proto(info: PublishedPolicy) -> common_pb2.PolicyVersion:
    policy = common_pb2.PolicyVersion(
        version=info.version,
        weights_uri=info.path.resolve().as_uri() if info.path is not None else "",
        format=FORMATS[info.kind],
        base_model=info.base_model,
        step=info.step,
    )
    if info.created_at:
        policy.created_at.FromNanoseconds(int(info.created_at * 1e9))
    return policy
