"""The rollout generator core on the tiny model: groups, ids, seeds, and log-probs that are the
policy's unscaled distribution (checked against a teacher-forced forward pass)."""

from __future__ import annotations

import pytest
from rollout_support import PROMPTS, generator_on, teacher_forced

from judgelab.engines.base import ChatMessage
from judgelab.engines.transformers_engine import TransformersEngine
from judgelab.rollout.generator import GenerationDefaults, PromptInput
from judgelab.serving.errors import InvalidArgument
from judgelab.spec.policy import PolicySpec


@pytest.mark.parametrize(("temperature", "top_p"), [(1.0, 1.0), (0.7, 0.9), (1.6, 0.5)])
def test_logprobs_are_the_unscaled_distribution_of_the_sampled_tokens(
    tiny_engine: TransformersEngine, temperature: float, top_p: float
) -> None:
    generator = generator_on(tiny_engine)
    params = generator.defaults.params(temperature=temperature, top_p=top_p, max_new_tokens=12)
    groups = generator.generate(PROMPTS, n=3, params=params)
    checked = 0
    for prompt, group in zip(PROMPTS, groups, strict=True):
        for rollout in group.rollouts:
            assert len(rollout.logprobs) == len(rollout.token_ids) > 0
            expected = teacher_forced(
                tiny_engine.model, tiny_engine.tokenizer, prompt.messages, rollout.token_ids
            )
            assert rollout.logprobs == pytest.approx(expected, abs=1e-4)
            checked += len(expected)
    assert checked >= 6 * 1  # every rollout had tokens; the loop really compared


def test_groups_have_n_rollouts_with_deterministic_ids_and_version_stamps(
    tiny_engine: TransformersEngine,
) -> None:
    generator = generator_on(tiny_engine)
    params = generator.defaults.params(max_new_tokens=5)
    groups = generator.generate(PROMPTS, n=4, params=params, id_prefix="arm-a:")
    assert [g.prompt_id for g in groups] == ["p0", "p1"]
    assert [r.id for r in groups[0].rollouts] == [f"arm-a:p0:0:{i}" for i in range(4)]
    for prompt, group in zip(PROMPTS, groups, strict=True):
        assert group.policy_version == 0
        for rollout in group.rollouts:
            assert rollout.policy_version == 0
            assert rollout.prompt_tokens == tiny_engine.count_tokens(prompt.messages)
            assert rollout.finish_reason in ("stop", "length")
            if rollout.finish_reason == "length":
                assert len(rollout.token_ids) == 5
    assert generator.produced_total == 8


def test_completion_i_uses_seed_plus_i(tiny_engine: TransformersEngine) -> None:
    generator = generator_on(tiny_engine)
    params = generator.defaults.params(max_new_tokens=8, seed=41)
    first = generator.generate(PROMPTS, n=3, params=params)
    again = generator.generate(PROMPTS, n=3, params=params)
    assert [r.token_ids for g in first for r in g.rollouts] == [
        r.token_ids for g in again for r in g.rollouts
    ]
    # Completion 1 with seed 41 is completion 0 with seed 42.
    shifted = generator.generate(
        PROMPTS, n=2, params=generator.defaults.params(max_new_tokens=8, seed=42)
    )
    for group, later in zip(first, shifted, strict=True):
        assert group.rollouts[1].token_ids == later.rollouts[0].token_ids
        assert group.rollouts[2].token_ids == later.rollouts[1].token_ids
    texts = {tuple(r.token_ids) for r in first[0].rollouts}
    assert len(texts) > 1  # different seeds really sample differently


def test_defaults_come_from_the_policy_spec() -> None:
    spec = PolicySpec.model_validate(
        {
            "model": {"name": "builtin:smollm2-135m-instruct"},
            "generation": {"temperature": 0.5, "top_p": 0.8, "max_new_tokens": 48},
            "algorithm": {"name": "grpo", "group_size": 4},
        }
    )
    defaults = GenerationDefaults.from_spec(spec)
    assert defaults == GenerationDefaults(0.5, 0.8, 48, 4)
    params = defaults.params(top_p=0.3)
    assert (params.temperature, params.top_p, params.max_new_tokens) == (0.5, 0.3, 48)


def test_a_prompt_that_cannot_fit_the_context_names_its_field(
    tiny_engine: TransformersEngine,
) -> None:
    generator = generator_on(tiny_engine)
    long = PromptInput("long", [ChatMessage("user", "x " * 600)])
    with pytest.raises(InvalidArgument) as caught:
        generator.generate(
            [PROMPTS[0], long], n=2, params=generator.defaults.params(max_new_tokens=8)
        )
    assert caught.value.problems[0].field == "prompts[1].messages"
    assert caught.value.problems[0].reason == "TOO_LONG"
    assert generator.produced_total == 0
