"""Self-improvement training on the tiny model: DPO rounds (saved, resumable), SFT on the
references, the gold win rate against the starting model, and the TrainPolicy dispatch."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from judgelab.engines.base import Conversation, Engine, Generation, SamplingParams
from judgelab.engines.tiny import tiny_engine as build_tiny
from judgelab.engines.transformers_engine import TransformersEngine
from judgelab.runtime import runners
from judgelab.selfimprove import loop
from judgelab.selfimprove.arms import run_arm
from judgelab.selfimprove.evaluate import gold_win_rate
from judgelab.selfimprove.loop import LoopSettings, run_rounds
from judgelab.selfimprove.prompts import MissingReferences, PromptRow, load_policy_rows
from judgelab.selfimprove.sft_baseline import train_on_references
from judgelab.spec import Experiment
from judgelab.spec.loader import load_experiment
from judgelab.spec.policy import DpoSelfJudgeAlgorithm
from judgelab.spec.training import LoraSpec
from tests.unit.selfimprove_support import LengthGold, QualityJudgeEngine, closeness

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "self-improve.yaml"
ROWS = [PromptRow(f"p{i}", f"Say {i}.", f"{i} it is") for i in range(4)]
LORA = LoraSpec(r=4, alpha=8, target_modules=["q_proj", "v_proj"])


def algorithm(**changes: object) -> DpoSelfJudgeAlgorithm:
    fields = {"name": "dpo-self-judge", "num_candidates": 3, "learning_rate": 5e-3}
    return DpoSelfJudgeAlgorithm.model_validate(fields | {"batch_size": 2} | changes)


def experiment(**algorithm_changes: object) -> Experiment:
    loaded = load_experiment(EXAMPLE)
    policy = loaded.spec.policy
    changed = policy.model_copy(update={"algorithm": algorithm(**algorithm_changes), "lora": LORA})
    changed.generation.max_new_tokens = 6
    return loaded.model_copy(update={"spec": loaded.spec.model_copy(update={"policy": changed})})


class FixedPolicy(Engine):
    """Answers every prompt with ``text``."""

    name = "fixed"

    def __init__(self, text: str) -> None:
        self.text = text

    def generate(
        self, conversations: Sequence[Conversation], params: SamplingParams
    ) -> list[Generation]:
        return [Generation(self.text, [], [], "stop", 1) for _ in conversations]

    def count_tokens(self, conversation: Conversation) -> int:
        return 1

    @property
    def context_length(self) -> int:
        return 1000


def test_dpo_rounds_save_each_round_and_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = build_tiny()
    settings = LoopSettings("self-judge", algorithm(rounds=2), LORA, True, max_new_tokens=6)
    judge = QualityJudgeEngine(closeness)
    result = run_rounds(base, ROWS, settings, tmp_path, judge_engine=judge)
    assert [r["round"] for r in result.rounds] == [1, 2]
    first = json.loads((tmp_path / "round-1" / "summary.json").read_text())
    assert first["pairs"] + first["ties"] == 4 and first["pairs"] >= 1
    assert first["comparisons"] == 4 * 3 * 2 and first["with_reference"] is True
    dpo = first["dpo"]
    assert len(dpo["losses"]) == dpo["steps"] >= 1 and len(dpo["reward_margins"]) == dpo["steps"]
    assert dpo["losses"][0] == pytest.approx(0.6931, abs=1e-3)  # policy = reference at step 1
    pairs = (tmp_path / "round-1" / "pairs.jsonl").read_text().splitlines()
    assert len(pairs) == first["pairs"]
    for number in (1, 2):
        adapter = tmp_path / f"round-{number}" / "adapter"
        assert (adapter / "adapter_config.json").is_file()
        assert (adapter / "adapter_model.safetensors").is_file()
    lora_b = [p for n, p in result.model.named_parameters() if "lora_B" in n]
    assert any(float(p.abs().max()) > 0 for p in lora_b)  # DPO moved the adapter

    def no_training(*_: object, **__: object) -> None:
        raise AssertionError("a finished round was trained again")

    monkeypatch.setattr(loop, "train_dpo_round", no_training)
    again = run_rounds(base, ROWS, settings, tmp_path, judge_engine=judge)
    assert again.rounds == result.rounds


def test_sft_on_references_trains_on_the_reference_tokens(tmp_path: Path) -> None:
    base = build_tiny()
    import copy

    result, too_long = train_on_references(
        copy.deepcopy(base.model), base.tokenizer, ROWS, algorithm(), LORA, tmp_path
    )
    assert too_long == [] and result.steps == 2 and len(result.losses) == 2
    with pytest.raises(MissingReferences, match="1 of 2 prompts have none: nope"):
        train_on_references(
            base.model, base.tokenizer, [ROWS[0], PromptRow("nope", "q")], algorithm(), LORA,
            tmp_path,
        )  # fmt: skip


def test_gold_win_rate_against_the_start_with_a_bootstrap_interval() -> None:
    gold = LengthGold()
    rows = ROWS[:3]
    params = SamplingParams(max_new_tokens=4, temperature=0.0)
    record = gold_win_rate(FixedPolicy("ab"), FixedPolicy("abcdef"), rows, gold, params)
    assert record["win_rate"]["rate"] == 1.0 and record["win_rate"]["n"] == 3
    assert record["win_rate"]["low"] == 1.0 and record["outcomes"]["win"] == 3
    assert {s.reference for s in gold.samples} == {r.reference for r in rows}
    lost = gold_win_rate(FixedPolicy("abcdef"), FixedPolicy(""), rows, gold, params)
    assert lost["win_rate"] is None and lost["dropped"] == 3  # empty answers: no gold score


def test_an_arm_end_to_end_writes_its_summary_and_win_rate(tmp_path: Path) -> None:
    base = TransformersEngine(
        build_tiny().model, build_tiny().tokenizer, device="cpu", name="tiny", context_length=4096
    )
    spec = experiment(rounds=1, num_candidates=2)
    summary = run_arm(spec, "reference-free", base, ROWS[:2], ROWS[2:], tmp_path, LengthGold())
    round_one = summary["training"]["rounds"][0]
    assert round_one["with_reference"] is False and round_one["comparisons"] == 2 * 2
    record = json.loads((tmp_path / "gold_win_rate.json").read_text())
    assert record["arm"] == "reference-free" and record["prompts"] == 2
    assert json.loads((tmp_path / "summary.json").read_text()) == summary


def test_train_policy_dispatches_dpo_self_judge_to_the_self_improvement_runner(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from judgelab.runtime import train_self_improve

    calls: list[str] = []
    monkeypatch.setattr(
        train_self_improve, "run_train_self_improve", lambda c, u: calls.append(u.name)
    )
    monkeypatch.setattr(runners, "run_train_policy", lambda c, u: calls.append("grpo"))

    class Context:
        experiment = experiment()

    class Unit:
        name = "self-judge"

    runners.run_train_policy_unit(Context(), Unit())  # type: ignore[arg-type]
    assert calls == ["self-judge"]


def test_policy_rows_come_from_the_data_when_annotate_did_not_run(tmp_path: Path) -> None:
    train, held_out = load_policy_rows(tmp_path, load_experiment(EXAMPLE))
    assert len(train) == 16 and len(held_out) == 8  # evaluation.heldout_prompts
    assert all(r.reference for r in train)
    assert not {r.id for r in train} & {r.id for r in held_out}
