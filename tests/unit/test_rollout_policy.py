"""Policy versions: atomic publishing (LoRA adapter or full weights) and pickup by a running
generator without a restart, each LoRA version applied to the pristine base."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from rollout_support import PROMPTS, generator_on, lora_model, teacher_forced

from judgelab.engines.policy_store import (
    MANIFEST,
    PolicyNotFound,
    PolicyStore,
    publish_policy_version,
)
from judgelab.engines.transformers_engine import TransformersEngine
from judgelab.rollout.policy import PolicyHolder
from judgelab.rollout.servicer import policy_to_proto


def _rollout_logprobs_match(engine_model: object, tokenizer: object, groups: list) -> None:
    for prompt, group in zip(PROMPTS, groups, strict=True):
        for rollout in group.rollouts:
            expected = teacher_forced(engine_model, tokenizer, prompt.messages, rollout.token_ids)
            assert rollout.logprobs == pytest.approx(expected, abs=1e-4)


def test_a_published_lora_version_is_picked_up_without_restart(
    tiny_engine: TransformersEngine, tmp_path: Path
) -> None:
    store = PolicyStore(tmp_path / "policy", base_model="tiny")
    generator = generator_on(tiny_engine, store)
    params = generator.defaults.params(max_new_tokens=10, seed=3)
    before = generator.generate(PROMPTS, n=2, params=params)
    assert {r.policy_version for g in before for r in g.rollouts} == {0}

    adapted = lora_model(tiny_engine.model, seed=1)
    info = publish_policy_version(tmp_path / "policy", 1, adapted, step=7, base_model="tiny")
    assert info.kind == "lora" and (tmp_path / "policy" / "v1" / "adapter_config.json").is_file()

    after = generator.generate(PROMPTS, n=2, params=params)
    assert {r.policy_version for g in after for r in g.rollouts} == {1}
    assert [r.id for r in after[0].rollouts] == ["p0:1:0", "p0:1:1"]
    assert generator.holder.current.engine is not tiny_engine and generator.holder.loads_total == 1
    # The log-probs are those of the adapted policy (peft, unmerged), not of the base.
    _rollout_logprobs_match(adapted, tiny_engine.tokenizer, after)
    base_view = teacher_forced(
        tiny_engine.model,
        tiny_engine.tokenizer,
        PROMPTS[0].messages,
        after[0].rollouts[0].token_ids,
    )
    assert (
        max(abs(a - b) for a, b in zip(after[0].rollouts[0].logprobs, base_view, strict=True))
        > 1e-2
    )
    status = policy_to_proto(generator.holder.current.info)
    assert (status.version, status.step, status.base_model) == (1, 7, "tiny")
    assert status.weights_uri.startswith("file://") and status.weights_uri.endswith("/v1")


def test_each_lora_version_applies_to_the_base_not_to_the_previous_version(
    tiny_engine: TransformersEngine, tmp_path: Path
) -> None:
    store = PolicyStore(tmp_path)
    holder = PolicyHolder(tiny_engine, store)
    adapter = lora_model(tiny_engine.model, seed=5)
    publish_policy_version(tmp_path, 1, adapter)
    first = holder.refresh().engine
    publish_policy_version(tmp_path, 2, adapter)  # the same adapter again
    second = holder.refresh().engine
    assert holder.current.version == 2
    for (name, a), (_, b) in zip(_params(first), _params(second), strict=True):
        assert torch.equal(a, b), name  # stacking v2 on v1 would have changed them
    base = dict(_params(tiny_engine))
    assert not torch.equal(
        dict(_params(first))["model.layers.0.self_attn.q_proj.weight"],
        base["model.layers.0.self_attn.q_proj.weight"],
    )


def test_full_weights_are_picked_up_too(tiny_engine: TransformersEngine, tmp_path: Path) -> None:
    full = copy.deepcopy(tiny_engine.model)
    with torch.no_grad():
        full.lm_head.weight.mul_(-1.0)
    info = publish_policy_version(tmp_path, 3, full)
    assert info.kind == "full"
    generator = generator_on(tiny_engine, PolicyStore(tmp_path))
    groups = generator.generate(PROMPTS, n=2, params=generator.defaults.params(max_new_tokens=6))
    assert {g.policy_version for g in groups} == {3}
    _rollout_logprobs_match(full, tiny_engine.tokenizer, groups)


def test_publishing_is_atomic_and_a_republished_version_replaces_the_old(
    tiny_engine: TransformersEngine, tmp_path: Path
) -> None:
    store = PolicyStore(tmp_path)
    assert store.latest_version() == 0 and store.versions() == []
    publish_policy_version(tmp_path, 1, lora_model(tiny_engine.model, seed=1), step=1)
    publish_policy_version(tmp_path, 1, lora_model(tiny_engine.model, seed=2), step=11)
    publish_policy_version(tmp_path, 2, lora_model(tiny_engine.model, seed=3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v1", "v2"]  # no staging left over
    assert store.versions() == [1, 2] and store.latest_version() == 2
    manifest = json.loads((tmp_path / "v1" / MANIFEST).read_text())
    assert manifest["step"] == 11 and manifest["kind"] == "lora" and manifest["version"] == 1
    # A directory without its manifest (a crash mid-write elsewhere) is not a version.
    (tmp_path / "v9").mkdir()
    assert store.versions() == [1, 2]
    with pytest.raises(PolicyNotFound):
        store.published(9)
    with pytest.raises(ValueError, match="version must be >= 1"):
        publish_policy_version(tmp_path, 0, tiny_engine.model)


def test_an_announced_version_that_is_not_on_disk_yet_keeps_the_current_one(
    tiny_engine: TransformersEngine, tmp_path: Path
) -> None:
    class Announcing(PolicyStore):
        def latest_version(self) -> int:
            return 4

    holder = PolicyHolder(tiny_engine, Announcing(tmp_path))
    assert holder.refresh().version == 0 and holder.current.engine is tiny_engine
    assert holder.latest_version() == 4


def test_version_pickup_needs_the_transformers_engine() -> None:
    from judgelab.engines.constant import ConstantEngine

    with pytest.raises(ValueError, match="transformers engine"):
        PolicyHolder(ConstantEngine(), PolicyStore("/nonexistent"))


def _params(engine: TransformersEngine) -> list[tuple[str, torch.Tensor]]:
    return list(engine.model.state_dict().items())
