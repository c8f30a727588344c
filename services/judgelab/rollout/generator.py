"""Sampling G completions per prompt from the loaded policy version (no gRPC, no Redis).

Each completion carries its token ids, the log-prob of each token under the policy's unscaled
distribution (temperature 1, no top-p: what the engine reports whatever sampled the token),
why it ended, the prompt's token count and the policy version that sampled it. Rollout ids are
``f"{id_prefix}{prompt_id}:{version}:{i}"``: deterministic, and unique as long as prompt ids
are. With a seed, completion i of every group is sampled with ``seed + i`` (one engine call per
i over all prompts); without one, all prompts x n rows go to the engine in one call.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from judgelab.engines.base import ChatMessage, Generation, SamplingParams
from judgelab.rollout.metrics import RolloutMetrics
from judgelab.rollout.policy import ActivePolicy, PolicyHolder
from judgelab.serving.errors import invalid
from judgelab.spec.policy import GrpoAlgorithm, PolicySpec

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class GenerationDefaults:
    """What an unset request field means: the experiment's policy sampling settings."""

    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    group_size: int = 8

    @classmethod
    def from_spec(cls, policy: PolicySpec) -> GenerationDefaults:
        algorithm = policy.algorithm
        group = (
            algorithm.group_size
            if isinstance(algorithm, GrpoAlgorithm)
            else (algorithm.num_candidates)
        )
        return cls(
            policy.generation.temperature,
            policy.generation.top_p,
            policy.generation.max_new_tokens,
            group,
        )

    def params(
        self,
        temperature: float | None = None,
        top_p: float | None = None,
        max_new_tokens: int | None = None,
        seed: int | None = None,
        stop: Sequence[str] = (),
    ) -> SamplingParams:
        """The defaults with the given fields overridden (ValueError names a bad field)."""
        return SamplingParams(
            temperature=self.temperature if temperature is None else temperature,
            top_p=self.top_p if top_p is None else top_p,
            max_new_tokens=self.max_new_tokens if max_new_tokens is None else max_new_tokens,
            seed=seed,
            stop=tuple(stop),
        )


@dataclass(frozen=True)
class PromptInput:
    """One prompt: an id unique within the call and the conversation to continue."""

    id: str
    messages: Sequence[ChatMessage]
    reference: str | None = None


@dataclass(frozen=True)
class RolloutResult:
    id: str
    text: str
    token_ids: list[int]
    logprobs: list[float]
    finish_reason: FinishReason
    policy_version: int
    prompt_tokens: int


@dataclass(frozen=True)
class GroupResult:
    """The n completions of one prompt, all sampled by ``policy_version``; ``sample_s``: seconds
    the engine took for the whole call the group was sampled in."""

    prompt_id: str
    policy_version: int
    rollouts: list[RolloutResult] = field(default_factory=list)
    sample_s: float | None = None


class RolloutGenerator:
    """Samples groups from the policy ``holder`` holds; refreshes it before each call."""

    def __init__(
        self,
        holder: PolicyHolder,
        defaults: GenerationDefaults | None = None,
        *,
        metrics: RolloutMetrics | None = None,
    ) -> None:
        self.holder = holder
        self.defaults = defaults or GenerationDefaults()
        self.metrics = metrics
        self.produced_total = 0
        self.dropped_stale_total = 0
        self._counts = threading.Lock()

    def generate(
        self,
        prompts: Sequence[PromptInput],
        n: int = 0,
        params: SamplingParams | None = None,
        *,
        id_prefix: str = "",
        arm: str = "",
        refresh: bool = True,
    ) -> list[GroupResult]:
        """One group of ``n`` (0: the default group size) completions per prompt, in order."""
        n = n or self.defaults.group_size
        params = params or self.defaults.params()
        policy = self.holder.refresh() if refresh else self.holder.current
        self.check_fits(policy, prompts, params.max_new_tokens)
        started = time.perf_counter()
        generations = _sample(policy, prompts, n, params)
        seconds = time.perf_counter() - started
        groups = [
            GroupResult(
                prompt.id,
                policy.version,
                [
                    _rollout(f"{id_prefix}{prompt.id}:{policy.version}:{i}", gen, policy.version)
                    for i, gen in enumerate(per_prompt)
                ],
                seconds,
            )
            for prompt, per_prompt in zip(prompts, generations, strict=True)
        ]
        with self._counts:
            self.produced_total += len(prompts) * n
        if self.metrics is not None:
            tokens = sum(len(r.token_ids) for g in groups for r in g.rollouts)
            self.metrics.record_batch(arm, len(prompts) * n, tokens, seconds)
        return groups

    def count_stale(self, dropped: int, arm: str = "") -> None:
        with self._counts:
            self.dropped_stale_total += dropped
        if self.metrics is not None:
            self.metrics.record_stale(arm, dropped)

    @staticmethod
    def check_fits(
        policy: ActivePolicy,
        prompts: Sequence[PromptInput],
        max_new_tokens: int,
        field_of: str = "prompts",
    ) -> None:
        """INVALID_ARGUMENT naming the first prompt whose tokens + max_new_tokens overflow."""
        engine = policy.engine
        for i, prompt in enumerate(prompts):
            tokens = engine.count_tokens(prompt.messages) + max_new_tokens
            if tokens > engine.context_length:
                raise invalid(
                    f"{field_of}[{i}].messages",
                    "TOO_LONG",
                    f"{tokens} tokens with max_new_tokens exceed the policy's context "
                    f"length {engine.context_length}",
                )


def _sample(
    policy: ActivePolicy, prompts: Sequence[PromptInput], n: int, params: SamplingParams
) -> list[list[Generation]]:
    """[prompt][i] generations."""
    conversations = [list(p.messages) for p in prompts]
    if params.seed is None:
        rows = policy.engine.generate([c for c in conversations for _ in range(n)], params)
        return [rows[k * n : (k + 1) * n] for k in range(len(prompts))]
    by_index = [
        policy.engine.generate(conversations, dataclasses.replace(params, seed=params.seed + i))
        for i in range(n)
    ]
    return [[by_index[i][k] for i in range(n)] for k in range(len(prompts))]


def _rollout(rollout_id: str, gen: Generation, version: int) -> RolloutResult:
    reason: FinishReason = "length" if gen.finish_reason == "length" else "stop"
    return RolloutResult(
        id=rollout_id,
        text=gen.text,
        token_ids=list(gen.token_ids),
        logprobs=list(gen.logprobs),
        finish_reason=reason,
        policy_version=version,
        prompt_tokens=gen.prompt_tokens,
    )
