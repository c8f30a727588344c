"""Judge GRPO (the second stage of sft+grpo) and pairwise judge training, on the tiny model."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
import yaml

from judgelab.engines.adapters import with_lora
from judgelab.engines.base import ChatMessage
from judgelab.engines.chat import render_prompt
from judgelab.engines.transformers_engine import TransformersEngine
from judgelab.judging import JudgeConfig, PairwiseJudge, PointwiseJudge, Scale
from judgelab.learner import trainer as trainer_module
from judgelab.learner.distributed import DistInfo
from judgelab.learner.settings import LoraSettings, TrainerSettings
from judgelab.learner.trainer import GrpoTrainer
from judgelab.spec import Experiment, validate_mapping
from judgelab.spec.judges import JudgeGrpoSpec
from judgelab.spec.training import LoraSpec
from judgelab.units.gold_rows import GoldRow, sample_of
from judgelab.units.judge_grpo import (
    GrpoItem,
    preference_reward,
    score_reward,
    train_judge_grpo,
)
from judgelab.units.judge_grpo_stage import grpo_items
from judgelab.units.judge_sft import build_examples
from judgelab.units.judge_sft_pairwise import build_pairwise_examples
from judgelab.units.judge_training import run_train_judge

QUICKSTART = Path(__file__).parents[2] / "examples" / "quickstart.yaml"


def test_score_reward_is_one_minus_squared_error_over_span_squared() -> None:
    scale = Scale(0, 9)  # M = 81
    assert score_reward("It is fine.\nScore: 7", "stop", 7, scale) == 1.0
    assert score_reward("Ok.\nScore: 4", "stop", 7, scale) == pytest.approx((81 - 9) / 81)
    assert score_reward("Score: 0", "stop", 9, scale) == 0.0
    assert score_reward("Score: 2", "length", 3, Scale(1, 5)) == pytest.approx((16 - 1) / 16)
    assert score_reward("Score: 5", "stop", 1, Scale(1, 5)) == 0.0


@pytest.mark.parametrize(
    ("text", "finish"),
    [
        ("Score: 7 because it is good", "stop"),  # last line not exactly the format
        ("Score: 7\nThanks!", "stop"),  # the verdict is not the last line
        ("Score: 12", "stop"),  # off the scale
        ("", "stop"),  # empty
        ("I think the answer is", "length"),  # cut off by the budget
    ],
)
def test_score_reward_is_minus_one_without_a_valid_verdict(text: str, finish: str) -> None:
    assert score_reward(text, finish, 7, Scale(0, 9)) == -1.0


def test_preference_reward_matches_gold_label() -> None:
    assert preference_reward("A is clearer.\nPreferred: A", "stop", "A") == 1.0
    assert preference_reward("Preferred: B", "stop", "A") == 0.0
    assert preference_reward("Preferred: C", "stop", "A") == -1.0
    assert preference_reward("Both are good.", "length", "B") == -1.0


def _e_share(text: str, finish_reason: str) -> float:
    """A toy reward the tiny model can learn in a few steps: the share of 'e' characters."""
    return sum(c == "e" for c in text) / max(len(text), 1)


def test_grpo_steps_raise_the_reward_and_train_only_the_sft_adapter(
    tiny_engine: TransformersEngine,
) -> None:
    torch.manual_seed(0)
    lora = LoraSpec(r=8, alpha=16, dropout=0.0)
    model = with_lora(copy.deepcopy(tiny_engine.model), lora)
    adapters = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}
    items = [GrpoItem(f"q{k}", [ChatMessage("user", f"Question {k}?")], _e_share) for k in range(4)]
    spec = JudgeGrpoSpec(
        num_generations=8, learning_rate=3e-2, steps=10, prompts_per_step=2, temperature=1.0
    )

    run = train_judge_grpo(model, tiny_engine, items, spec, lora, max_new_tokens=8, seed=0)

    assert run.model is model  # the SFT adapter trained on, not a fresh one
    assert [s.step for s in run.steps] == list(range(1, 11))
    assert all(s.invalid_rate == 0.0 and s.completion_tokens_mean <= 8 for s in run.steps)
    first, last = run.steps[0], run.steps[-1]
    print(f"\ntoy reward {first.reward_mean:.3f} -> {last.reward_mean:.3f}")
    assert last.reward_mean > first.reward_mean + 0.05
    trained = dict(model.named_parameters())
    assert all(trained[n].shape == p.shape for n, p in adapters.items())
    assert any(not torch.equal(trained[n], p) for n, p in adapters.items())
    assert all(torch.equal(trained[n], p) for n, p in frozen.items())


def test_judge_grpo_trains_alone_under_torchrun(
    tiny_engine: TransformersEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TrainJudges trains on rank 0 while the other ranks have left the process group: its
    trainer must not start data parallelism with them (DDP would wait for them forever)."""
    monkeypatch.setattr(trainer_module, "current", lambda: DistInfo(rank=0, world_size=2))
    lora = LoraSpec(r=4, alpha=8, dropout=0.0)
    model = with_lora(copy.deepcopy(tiny_engine.model), lora)
    items = [GrpoItem("q0", [ChatMessage("user", "Question?")], _e_share)]
    spec = JudgeGrpoSpec(
        num_generations=2, learning_rate=1e-2, steps=1, prompts_per_step=1, temperature=1.0
    )

    run = train_judge_grpo(model, tiny_engine, items, spec, lora, max_new_tokens=4, seed=0)

    assert [s.step for s in run.steps] == [1]


def test_learner_keeps_given_adapters_and_starts_its_reference_there(
    tiny_engine: TransformersEngine,
) -> None:
    torch.manual_seed(0)
    model = with_lora(copy.deepcopy(tiny_engine.model), LoraSpec(r=4, alpha=8, dropout=0.0))
    with torch.no_grad():  # an adapter that already moved the model, as SFT leaves it
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.5)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    settings = TrainerSettings(group_size=2, lora=LoraSettings(r=4, alpha=8, dropout=0.0))

    trainer = GrpoTrainer(model, tiny_engine.tokenizer.pad_token_id, settings)

    assert trainer.policy is model and set(trainer.params) == names
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad(), trainer.reference.model() as reference:
        expected = reference(input_ids=ids).logits
    assert torch.allclose(model(input_ids=ids).logits, expected)


def _rows() -> list[GoldRow]:
    good, curt = "Paris is the capital of France.", "Paris."
    return [
        GoldRow("p1-good", "Capital of France?", good, None, 8, "Complete and polite.", True),
        GoldRow("p1-curt", "Capital of France?", curt, None, 3, "Too curt.", True),
        GoldRow("p2-only", "Capital of Spain?", "Madrid.", None, 6, "Correct.", True),
        GoldRow("bad", "Capital of Italy?", "Rome.", None, None, "", False, "unparseable"),
    ]


def test_reasoning_sft_prompt_is_what_the_judge_sees_when_judging(
    tiny_engine: TransformersEngine,
) -> None:
    config = JudgeConfig(name="j", model="m", reasoning=True, reasoning_budget=16)
    judge = PointwiseJudge(tiny_engine, config)
    (example, *_) = build_examples(judge, tiny_engine.tokenizer, _rows()[:1], 4096).examples
    prompt = render_prompt(tiny_engine.tokenizer, judge.conversation(sample_of(_rows()[0])))
    prompt_ids = tiny_engine.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert example.input_ids[: len(prompt_ids)] == prompt_ids
    assert example.labels[len(prompt_ids)] != -100  # the reasoning starts right after it


@pytest.mark.parametrize("reasoning", [False, True])
def test_pairwise_examples_cover_both_orders_with_gold_label(
    tiny_engine: TransformersEngine, reasoning: bool
) -> None:
    config = JudgeConfig(
        name="j",
        model="m",
        protocol="pairwise",
        reasoning=reasoning,
        reasoning_budget=64 if reasoning else None,
    )
    judge = PairwiseJudge(tiny_engine, config)
    built = build_pairwise_examples(judge, tiny_engine.tokenizer, _rows(), 4096)
    assert [e.id for e in built.examples] == ["p1-good|p1-curt:AB", "p1-good|p1-curt:BA"]
    assert dict(built.skipped) == {"bad": "gold_invalid:unparseable", "p2-only": "no_gold_pair"}
    targets = [tiny_engine.tokenizer.decode(e.target_ids) for e in built.examples]
    if reasoning:
        assert targets[0].endswith("Preferred: A<|im_end|>")
        assert targets[1].endswith("Preferred: B<|im_end|>")
        assert targets[0].startswith("Response A: Complete and polite.")
        assert targets[1].startswith("Response A: Too curt.")
    else:
        assert targets == ["A", "B"]


def test_pairwise_grpo_items_reward_gold_label_in_each_order(
    tiny_engine: TransformersEngine,
) -> None:
    config = JudgeConfig(name="j", model="m", protocol="pairwise", reasoning=True)
    items, skipped = grpo_items(PairwiseJudge(tiny_engine, config), _rows(), tiny_engine, 16)
    assert [i.id for i in items] == ["p1-good|p1-curt:AB", "p1-good|p1-curt:BA"]
    assert [i.reward("Preferred: A", "stop") for i in items] == [1.0, 0.0]
    assert [i.reward("Preferred: B", "stop") for i in items] == [0.0, 1.0]
    assert skipped == [("bad", "gold_invalid:unparseable")]


def quickstart_with(judge: dict[str, object]) -> Experiment:
    data = yaml.safe_load(QUICKSTART.read_text())
    data["spec"]["judges"] = [judge]
    data["spec"].pop("arms", None)
    if judge.get("protocol") == "pairwise":
        data["spec"]["data"]["responses"]["per_prompt"] = 2
    return validate_mapping(data)


def write_split(path: Path, rows: list[GoldRow]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        {
            "id": r.id,
            "prompt": r.prompt,
            "response": r.response,
            "gold_score": r.score,
            "gold_reasoning": r.reasoning,
            "valid": r.valid,
            "invalid_reason": r.invalid_reason,
        }
        for r in rows
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_unit_runs_grpo_after_sft_and_records_it(
    tiny_engine: TransformersEngine, tmp_path: Path
) -> None:
    judge: dict[str, object] = {
        "name": "thinker",
        "model": {"name": "builtin:smollm2-135m-instruct"},
        "reasoning": True,
        "reasoning_budget": 16,
        "training": {
            "recipe": "sft+grpo",
            "sft": {"epochs": 1, "batch_size": 4, "learning_rate": 1e-3, "max_length": 512},
            "grpo": {"num_generations": 2, "steps": 2, "prompts_per_step": 2},
        },
    }
    write_split(tmp_path / "annotate" / "judge_train.jsonl", _rows())
    write_split(tmp_path / "annotate" / "judge_eval.jsonl", _rows()[:3])

    summary = run_train_judge(quickstart_with(judge), tmp_path, "thinker", engine=tiny_engine)

    training = json.loads((tmp_path / "judges" / "thinker" / "training.json").read_text())
    grpo = training["grpo"]
    assert isinstance(grpo, dict) and grpo == summary.grpo
    assert grpo["steps"] == 2 and len(grpo["reward_mean"]) == len(grpo["invalid_rate"]) == 2
    assert all(-1.0 <= r <= 1.0 for r in grpo["reward_mean"])
    assert grpo["settings"]["force_verdict"] is True and len(grpo["forced_rate"]) == 2
    assert all(f <= i for f, i in zip(grpo["forced_rate"], grpo["invalid_rate"], strict=True))
    assert grpo["items"] == 3 and grpo["skipped"] == {"gold_invalid:unparseable": 1}
    assert grpo["settings"]["max_new_tokens"] == 16 + 32 and grpo["seconds"] > 0
    assert grpo["after_sft"]["examples"] == grpo["after"]["examples"] == 3
    rates = grpo["invalid_output_rate"]
    assert 0.0 <= rates["before"] <= 1.0 and 0.0 <= rates["after"] <= 1.0
    assert training["strict_invalid_rate"]["after_sft"] == rates["before"]
    assert training["strict_invalid_rate"]["trained"] == rates["after"]
    assert (tmp_path / "judges" / "thinker" / "adapter" / "adapter_config.json").is_file()
    table = json.loads((tmp_path / "judges.json").read_text())
    assert [(e["name"], e["trained"]) for e in table] == [("thinker", False), ("thinker", True)]


def test_unit_trains_a_pairwise_judge_on_both_orders(
    tiny_engine: TransformersEngine, tmp_path: Path
) -> None:
    judge: dict[str, object] = {
        "name": "versus",
        "model": {"name": "builtin:smollm2-135m-instruct"},
        "protocol": "pairwise",
        "training": {
            "recipe": "sft",
            "sft": {"epochs": 1, "batch_size": 2, "learning_rate": 1e-3, "max_length": 512},
        },
    }
    write_split(tmp_path / "annotate" / "judge_train.jsonl", _rows())
    write_split(tmp_path / "annotate" / "judge_eval.jsonl", _rows())

    summary = run_train_judge(quickstart_with(judge), tmp_path, "versus", engine=tiny_engine)

    assert summary.examples == 2 and summary.steps == 1
    assert summary.skipped == {"gold_invalid:unparseable": 1, "no_gold_pair": 1}
    assert summary.trained is not None and summary.trained.examples == 1
    assert (tmp_path / "judges" / "versus" / "adapter" / "adapter_config.json").is_file()
