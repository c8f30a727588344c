"""dpo-self-judge after training: the splits-only Annotate, Evaluate's collection of the arms'
gold win rates and DPO rounds, judge agreement with vs without references, and the report."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from judgelab.engines.base import Conversation, Generation, SamplingParams
from judgelab.engines.constant import ConstantEngine
from judgelab.evaluation.report import build_report
from judgelab.selfimprove.agreement import agreement_with_gold, gold_pairs
from judgelab.selfimprove.prompts import PromptRow, load_policy_rows
from judgelab.spec import Experiment, validate_mapping
from judgelab.units.annotate import run_annotate
from judgelab.units.evaluate_self_improve import evaluate_self_improve
from tests.unit.selfimprove_support import LengthGold, QualityJudgeEngine, closeness

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "self-improve.yaml"
ARMS = ("self-judge", "sft-on-references", "reference-free")


class NoModel(ConstantEngine):
    """Fails the test if Annotate samples responses."""

    def generate(
        self, conversations: Sequence[Conversation], params: SamplingParams
    ) -> list[Generation]:
        raise AssertionError("a splits-only Annotate samples nothing")


class NoGold:
    def annotate(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a splits-only Annotate asks no gold label")


def experiment() -> Experiment:
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw["spec"]["data"]["splits"] = {
        "judge_train": 1,
        "judge_eval": 1,
        "policy_train": 2,
        "policy_eval": 3,
    }
    raw["spec"]["evaluation"]["heldout_prompts"] = 3
    return validate_mapping(raw, str(EXAMPLE))


def quiet(_done: int, _total: int, _note: str) -> None:
    pass


def test_annotate_writes_every_split_without_sampling_or_gold(tmp_path: Path) -> None:
    summary = run_annotate(
        experiment(), tmp_path, annotator=NoGold(), policy_engine=NoModel(), progress=quiet
    )
    sizes = {"judge_train": 1, "judge_eval": 1, "policy_train": 2, "policy_eval": 3}
    for name, size in sizes.items():
        lines = (tmp_path / "annotate" / f"{name}.jsonl").read_text().splitlines()
        rows = [json.loads(line) for line in lines]
        assert len(rows) == size and all(r["split"] == name and r["reference"] for r in rows)
    assert summary.labelled == 0 and summary.responses_sampled == 0
    train, held_out = load_policy_rows(tmp_path, experiment())
    assert (len(train), len(held_out)) == (2, 3)


def test_agreement_counts_a_judge_that_matches_gold_only_with_the_reference() -> None:
    rows = [PromptRow(f"p{i}", f"Q{i}", f"ref {i}") for i in range(3)]
    answers = [(r.id, r.reference or "", 9.0) for r in rows]
    answers += [(r.id, "a longer but wrong answer", 2.0) for r in rows]
    answers += [("p2", "close", 2.2)]  # within the tie margin of the wrong one: no pair
    pairs = gold_pairs(rows, answers)
    assert len(pairs) == 3 + 1  # p2 also pairs "close" with its reference
    judge = QualityJudgeEngine(closeness)
    guided = agreement_with_gold(judge, pairs, True, resamples=200)
    blind = agreement_with_gold(judge, pairs, False, resamples=200)
    assert guided["agreement"]["rate"] == 1.0 and guided["valid"] == 4
    assert blind["agreement"]["rate"] < 0.5
    assert judge.calls == [8, 8]  # both orders of all pairs in one call per condition


def capped_closeness(response: str, reference: str | None) -> float:
    """``closeness`` with long answers capped below an exact match of the reference."""
    return 3.0 if response == reference else min(closeness(response, None), 2.5)


def _write_arm(run_dir: Path, arm: str, held_out: Sequence[PromptRow], good: bool) -> None:
    arm_dir = run_dir / "arms" / arm
    arm_dir.mkdir(parents=True)
    end = "a longer but wrong answer" if not good else None
    answers = [
        {
            "id": row.id,
            "start": [{"text": "short", "gold": 5.0}],
            "end": [{"text": end or row.reference, "gold": 2.0 if end else 9.0}],
        }
        for row in held_out
    ]
    outcomes = {"win": 3, "tie": 0, "loss": 0} if good else {"win": 0, "tie": 0, "loss": 3}
    record = {"arm": arm, "outcomes": outcomes, "dropped": 0, "answers": answers}
    (arm_dir / "gold_win_rate.json").write_text(json.dumps(record))
    dpo = {"steps": 2, "losses": [0.69, 0.5], "reward_margins": [0.0, 0.4],
           "reward_accuracies": [0.0, 1.0], "seconds": 1.0}  # fmt: skip
    rounds = [{"round": 1, "judge": "policy", "with_reference": arm == "self-judge",
               "prompts": 2, "pairs": 1,
               "ties": 1, "mean_score_margin": 0.2, "comparisons": 12,
               "invalid_comparisons": 0, "comparisons_per_second": 30.0, "dpo": dpo}]  # fmt: skip
    training: dict[str, Any] = {"kind": "self-judge-dpo", "rounds": rounds}
    if arm == "sft-on-references":
        training = {"kind": arm, "examples": 2, "steps": 1, "losses": [2.0], "seconds": 0.5}
    summary = {"arm": arm, "training": training, "gold_start_mean": 5.0,
               "gold_end_mean": 9.0 if good else 2.0}  # fmt: skip
    (arm_dir / "summary.json").write_text(json.dumps(summary))


def test_evaluate_collects_the_arms_and_the_report_shows_them(tmp_path: Path) -> None:
    spec = experiment()
    run_annotate(spec, tmp_path, annotator=NoGold(), policy_engine=NoModel(), progress=quiet)
    _, held_out = load_policy_rows(tmp_path, spec)
    for arm in ARMS:
        _write_arm(tmp_path, arm, held_out, good=arm != "reference-free")
    judge = QualityJudgeEngine(capped_closeness)
    doc = evaluate_self_improve(
        spec, tmp_path, tmp_path / "evaluate", LengthGold(), quiet, lambda: judge
    )
    assert set(doc["arms"]) == set(ARMS)
    round_one = doc["arms"]["self-judge"]["rounds"][0]
    assert (round_one["pairs"], round_one["ties"], round_one["dpo_loss_last"]) == (1, 1, 0.5)
    assert round_one["judge"] == "policy" and doc["arms"]["self-judge"]["judge"] is None
    assert doc["arms"]["sft-on-references"]["sft"]["steps"] == 1
    versus = doc["versus_reference"]["rows"]
    assert set(versus) == {*ARMS, "starting policy"}
    agreement = doc["judge_agreement"]
    guided, blind = agreement["with_reference"], agreement["without_reference"]
    assert guided["pairs"] == blind["pairs"] == 3 * 3  # start, good end, bad end per prompt
    assert guided["agreement"]["rate"] > blind["agreement"]["rate"]
    outputs = (tmp_path / "evaluate" / "outputs" / "self-judge.jsonl").read_text().splitlines()
    assert [json.loads(x)["stage"] for x in outputs] == ["start"] * 3 + ["end"] * 3

    result = build_report(tmp_path)
    report = result.markdown.read_text()
    assert "Self-improvement: gold win rate of each arm" in report
    assert "win rate vs references" in report and "comparisons/s" in report
    assert "| self-judge | 1 | policy | yes |" in report  # the round's judge and reference
    assert (tmp_path / "report" / "self_improve_win_rate.png").stat().st_size > 10_000
    results = json.loads(result.results.read_text())
    arms = results["self_improve"]["arms"]
    assert arms["self-judge"]["win_rate"]["rate"] == 1.0
    assert arms["reference-free"]["win_rate"]["rate"] == 0.0
    assert results["sections"]["Self-improvement: gold win rate of each arm"] == "ok"
    assert all(math.isfinite(v) for v in _numbers(results["self_improve"]))


def test_evaluate_needs_every_arm_finished(tmp_path: Path) -> None:
    spec = experiment()
    run_annotate(spec, tmp_path, annotator=NoGold(), policy_engine=NoModel(), progress=quiet)
    from judgelab.units.evaluate_outputs import EvaluateError

    with pytest.raises(EvaluateError, match="TrainPolicy did not finish self-judge"):
        evaluate_self_improve(spec, tmp_path, tmp_path / "evaluate", None, quiet)


def _numbers(value: Any) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [float(value)]
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    return []
