"""Staleness: a batch whose policy version falls more than max_staleness behind the latest
published version is dropped (counted, in the metric too), and sampled again on the latest."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch

from judgelab.engines.base import ChatMessage
from judgelab.engines.policy_store import PolicyStore, publish_policy_version
from judgelab.engines.transformers_engine import TransformersEngine
from judgelab.queues.messages import PromptMessage
from judgelab.queues.names import StreamNames
from judgelab.rollout.generator import GenerationDefaults, GroupResult, RolloutGenerator
from judgelab.rollout.metrics import RolloutMetrics
from judgelab.rollout.policy import PolicyHolder
from judgelab.rollout.worker import PromptSampler, StaleRollouts

MESSAGES = [PromptMessage("m0", "Say hi."), PromptMessage("m1", [ChatMessage("user", "Count.")])]
DEFAULTS = GenerationDefaults(temperature=1.0, top_p=1.0, max_new_tokens=4, group_size=3)


class ScriptedStore(PolicyStore):
    """Announces the versions of ``script`` one call at a time, then keeps the last."""

    def __init__(self, root: Path, script: list[int]) -> None:
        super().__init__(root)
        self.script = list(script)

    def latest_version(self) -> int:
        return self.script.pop(0) if len(self.script) > 1 else self.script[0]


def _sampler(
    engine: TransformersEngine, store: PolicyStore, max_staleness: int, max_attempts: int = 3
) -> tuple[PromptSampler, RolloutMetrics]:
    metrics = RolloutMetrics()
    holder = PolicyHolder(engine, store, arm="arm-a", metrics=metrics)
    generator = RolloutGenerator(holder, DEFAULTS, metrics=metrics)
    sampler = PromptSampler(
        generator,
        StreamNames("demo"),
        arm="arm-a",
        judge="plain",
        max_staleness=max_staleness,
        max_attempts=max_attempts,
    )
    return sampler, metrics


def _dropped_metric(metrics: RolloutMetrics) -> float:
    value = metrics.service.registry.get_sample_value(
        "judgelab_rollouts_dropped_stale_total",
        {"experiment": "", "service": "rollout-generator", "arm": "arm-a"},
    )
    return value or 0.0


@pytest.fixture
def published(tiny_engine: TransformersEngine, tmp_path: Path) -> Path:
    full = copy.deepcopy(tiny_engine.model)
    with torch.no_grad():
        full.lm_head.weight.mul_(0.5)
    publish_policy_version(tmp_path, 3, full)
    return tmp_path


def test_a_batch_too_far_behind_is_dropped_counted_and_resampled_on_the_latest(
    tiny_engine: TransformersEngine, published: Path
) -> None:
    # Sampling starts on v0; when the batch is done the learner has announced v3.
    sampler, metrics = _sampler(tiny_engine, ScriptedStore(published, [0, 3]), max_staleness=1)
    groups = sampler.sample_fresh(MESSAGES)
    assert {g.policy_version for g in groups.values()} == {3}
    assert all(
        r.id.startswith(f"arm-a:{g.prompt_id}:3:") for g in groups.values() for r in g.rollouts
    )
    assert sampler.generator.dropped_stale_total == 2 * 3  # both groups of the v0 batch
    assert _dropped_metric(metrics) == 6
    assert sampler.generator.produced_total == 12  # the dropped batch was sampled, too


def test_a_resampled_batch_reports_the_sampling_time_of_every_attempt(
    tiny_engine: TransformersEngine, published: Path
) -> None:
    sampler, _ = _sampler(tiny_engine, ScriptedStore(published, [0, 3]), max_staleness=1)
    generate = sampler.generator.generate
    timed: list[float | None] = []

    def recording(*args: Any, **kwargs: Any) -> list[GroupResult]:
        groups = generate(*args, **kwargs)
        timed.append(groups[0].sample_s)
        return groups

    sampler.generator.generate = recording  # type: ignore[method-assign]
    groups = sampler.sample_fresh(MESSAGES)
    assert len(timed) == 2 and all(s is not None and s > 0 for s in timed)
    assert [g.sample_s for g in groups.values()] == pytest.approx([sum(timed)] * len(MESSAGES))


def test_a_batch_within_the_bound_is_kept(tiny_engine: TransformersEngine, published: Path) -> None:
    sampler, metrics = _sampler(tiny_engine, ScriptedStore(published, [0, 1]), max_staleness=1)
    groups = sampler.sample_fresh(MESSAGES)
    assert {g.policy_version for g in groups.values()} == {0}
    assert sampler.generator.dropped_stale_total == 0 and _dropped_metric(metrics) == 0


def test_strictly_on_policy_drops_a_batch_one_version_behind(
    tiny_engine: TransformersEngine, published: Path
) -> None:
    sampler, _ = _sampler(tiny_engine, ScriptedStore(published, [0, 1, 3]), max_staleness=0)
    groups = sampler.sample_fresh(MESSAGES)
    assert {g.policy_version for g in groups.values()} == {3}
    assert sampler.generator.dropped_stale_total == 6


def test_a_policy_that_stays_out_of_reach_leaves_the_prompts_pending(
    tiny_engine: TransformersEngine, published: Path
) -> None:
    # v9 is announced but never reaches the disk: every batch is sampled on v0, 9 behind.
    sampler, metrics = _sampler(
        tiny_engine, ScriptedStore(published, [9]), max_staleness=1, max_attempts=2
    )
    with pytest.raises(StaleRollouts):
        sampler.sample_fresh(MESSAGES)
    assert sampler.generator.dropped_stale_total == 2 * 6 and _dropped_metric(metrics) == 12
