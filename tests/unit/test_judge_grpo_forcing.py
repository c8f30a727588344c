"""Budget-forced judge GRPO rollouts (``units.judge_grpo_forcing``), on the tiny model."""

from __future__ import annotations

import copy
import functools
import random

import pytest
import torch

from judgelab.engines.adapters import with_lora
from judgelab.engines.base import ChatMessage, Generation
from judgelab.engines.transformers_engine import TransformersEngine
from judgelab.judging.scale import Scale
from judgelab.spec.judges import JudgeGrpoSpec
from judgelab.spec.training import LoraSpec
from judgelab.units.judge_grpo import GrpoItem, score_reward, train_judge_grpo
from judgelab.units.judge_grpo_forcing import VerdictForcing, pick, rollout

SCALE = Scale(0, 9)
CONVERSATION = [ChatMessage("user", "Rate the response 'Paris.' to 'Capital of France?'")]


def _generation(engine: TransformersEngine, text: str, finish: str, eos: bool) -> Generation:
    ids = engine.tokenizer(text, add_special_tokens=False)["input_ids"]
    if eos:
        ids = [*ids, engine.tokenizer.eos_token_id]
    return Generation(text, ids, [0.0] * len(ids), finish, prompt_tokens=10)


def _reward(gold: int) -> functools.partial[float]:
    return functools.partial(_score, gold=gold)


def _score(text: str, finish: str, *, gold: int) -> float:
    return score_reward(text, finish, gold, SCALE)


@pytest.mark.parametrize(
    ("text", "finish", "eos"),
    [("The answer is short and", "length", False), ("It is fine.\n", "stop", True)],
)
def test_forced_rollout_appends_verdict_tokens_and_pays_the_penalty(
    tiny_engine: TransformersEngine, text: str, finish: str, eos: bool
) -> None:
    generation = _generation(tiny_engine, text, finish, eos)
    forcing = VerdictForcing.for_scale(SCALE, penalty=0.5)

    result = rollout(
        tiny_engine, CONVERSATION, generation, _reward(6), forcing, random.Random(0), 0.0
    )

    (scores,) = tiny_engine.score_candidates(
        [CONVERSATION], SCALE.candidates(), f"{text.rstrip()}\nScore: "
    )
    argmax = max(SCALE.candidates(), key=lambda c: scores.probs[c])  # temperature 0
    assert result.forced and not result.valid
    assert result.text == f"{text.rstrip()}\nScore: {argmax}"
    kept = tiny_engine.tokenizer(text.rstrip(), add_special_tokens=False)["input_ids"]
    assert result.token_ids[: len(kept)] == tuple(kept)
    tail = tiny_engine.tokenizer.decode(result.token_ids[len(kept) :])
    assert tail == f"\nScore: {argmax}<|im_end|>"
    assert result.reward == pytest.approx(_score(result.text, "stop", gold=6) - 0.5)


def test_sample_with_its_own_verdict_is_untouched(tiny_engine: TransformersEngine) -> None:
    generation = _generation(tiny_engine, "Correct and brief.\nScore: 7", "stop", eos=True)
    forcing = VerdictForcing.for_scale(SCALE, penalty=0.5)

    result = rollout(
        tiny_engine, CONVERSATION, generation, _reward(7), forcing, random.Random(0), 1.0
    )

    assert (result.reward, result.valid, result.forced) == (1.0, True, False)
    assert result.token_ids == tuple(generation.token_ids)


def test_forcing_off_keeps_minus_one(tiny_engine: TransformersEngine) -> None:
    generation = _generation(tiny_engine, "The answer is short and", "length", eos=False)

    result = rollout(tiny_engine, CONVERSATION, generation, _reward(6), None, random.Random(0), 1.0)

    assert (result.reward, result.valid, result.forced) == (-1.0, False, False)
    assert result.token_ids == tuple(generation.token_ids)


def test_pick_is_seeded_follows_temperature_and_needs_some_mass() -> None:
    probs = {"0": 0.2, "1": 0.8}
    assert pick(probs, ("0", "1"), 0.0, random.Random(1)) == "1"
    draws = [pick(probs, ("0", "1"), 1.0, random.Random(s)) for s in range(200)]
    assert draws == [pick(probs, ("0", "1"), 1.0, random.Random(s)) for s in range(200)]
    assert 0.65 < draws.count("1") / 200 < 0.95
    sharp = [pick(probs, ("0", "1"), 0.25, random.Random(s)) for s in range(200)]
    assert sharp.count("1") > draws.count("1")
    assert pick({"0": 0.0, "1": 0.0}, ("0", "1"), 1.0, random.Random(0)) is None


def _grpo(engine: TransformersEngine, forcing: VerdictForcing | None) -> tuple[float, float, float]:
    torch.manual_seed(0)
    lora = LoraSpec(r=4, alpha=8, dropout=0.0)
    model = with_lora(copy.deepcopy(engine.model), lora)
    items = [GrpoItem(f"q{k}", CONVERSATION, _reward(k + 3)) for k in range(2)]
    spec = JudgeGrpoSpec(num_generations=4, learning_rate=1e-3, steps=1, prompts_per_step=2)
    # 4 tokens: the tiny model never writes a verdict line, so every sample is cut off.
    run = train_judge_grpo(model, engine, items, spec, lora, 4, seed=0, forcing=forcing)
    (step,) = run.steps
    return step.grad_norm, step.forced_rate, step.reward_std


def test_forced_rollouts_give_a_learning_signal_where_unforced_give_none(
    tiny_engine: TransformersEngine,
) -> None:
    forced_norm, forced_rate, forced_std = _grpo(tiny_engine, VerdictForcing.for_scale(SCALE, 0.5))
    plain_norm, plain_rate, plain_std = _grpo(tiny_engine, None)

    assert forced_rate == 1.0 and forced_std > 0 and forced_norm > 0
    assert plain_rate == 0.0 and plain_std == 0.0 and plain_norm == 0.0
