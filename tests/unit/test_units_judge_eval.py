"""Judge evaluation against gold: metrics, nan handling, pairs, RUN/judges.json."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from judgelab.engines.constant import ConstantEngine
from judgelab.judging import JudgeConfig, PairwiseJudge, PointwiseJudge
from judgelab.units.gold_rows import GoldRow
from judgelab.units.judge_eval import (
    JudgeEvaluation,
    evaluate_judge,
    gold_pairs,
    update_judges_json,
)

if TYPE_CHECKING:
    from judgelab.engines.transformers_engine import TransformersEngine


def rows() -> list[GoldRow]:
    scored = [
        GoldRow(f"r{i}", f"Question {i % 3}?", f"answer {i}", None, score, "why", True)
        for i, score in enumerate([1, 3, 5, 7, 9, 2])
    ]
    invalid = GoldRow("bad", "Question 0?", "x", None, None, "", False, "unparseable")
    return [*scored, invalid]


def test_constant_judge_has_undefined_correlations_not_errors() -> None:
    judge = PointwiseJudge(ConstantEngine(answer="7", probability=1.0), JudgeConfig("c", "m"))
    result = evaluate_judge(judge, rows(), trained=False)
    assert result.examples == 6  # the row without a gold score is not judged
    assert result.invalid_rate == 0.0 and result.mean_reasoning_tokens == 0.0
    assert math.isnan(result.pearson) and math.isnan(result.spearman)
    assert "constant" in result.undefined["pearson"]
    # Every judge score is 7 while gold varies: alpha is defined and poor.
    assert result.alpha_interval < 0
    assert result.judgements_per_s > 0
    assert math.isnan(result.accuracy)
    as_json = result.to_dict()
    assert as_json["pearson"] is None and as_json["accuracy"] is None
    json.dumps(as_json, allow_nan=False)


def test_unparseable_reasoning_judge_is_all_invalid() -> None:
    engine = ConstantEngine(text="I think it is fine overall")
    judge = PointwiseJudge(engine, JudgeConfig("r", "m", reasoning=True, reasoning_budget=32))
    result = evaluate_judge(judge, rows(), trained=False)
    assert result.invalid_rate == 1.0
    assert math.isnan(result.alpha_interval) and result.undefined["alpha_interval"]
    assert result.mean_reasoning_tokens == 6.0  # whitespace words of the constant text


def test_reasoning_judge_counts_its_reasoning_tokens() -> None:
    engine = ConstantEngine(text="Good enough.\nScore: 7")
    judge = PointwiseJudge(engine, JudgeConfig("r", "m", reasoning=True, reasoning_budget=32))
    result = evaluate_judge(judge, rows(), trained=False)
    assert result.invalid_rate == 0.0 and result.mean_reasoning_tokens == 4.0


def test_gold_pairs_need_one_prompt_and_different_gold_scores() -> None:
    pairs, gold = gold_pairs(rows())
    # Prompts 0: scores 1, 7 (+ invalid row, ignored); 1: 3, 9; 2: 5, 2.
    assert [p.id for p in pairs] == ["r0|r3", "r4|r1", "r2|r5"]
    assert gold == [0, 1, 1]
    same = [GoldRow("a", "Q", "x", None, 4, "", True), GoldRow("b", "Q", "y", None, 4, "", True)]
    assert gold_pairs(same) == ([], [])


def test_position_biased_pairwise_judge_is_inconsistent() -> None:
    # Always prefers whatever is shown first: both orders disagree, P(A) averages to 0.5.
    engine = ConstantEngine(answer="A", probability=1.0)
    judge = PairwiseJudge(engine, JudgeConfig("p", "m", protocol="pairwise"))
    result = evaluate_judge(judge, rows(), trained=True)
    assert result.protocol == "pairwise" and result.examples == 3
    assert result.accuracy == pytest.approx(0.5)
    assert result.position_consistency == 0.0
    assert math.isnan(result.alpha_interval)


def test_pairwise_without_pairs_reports_why() -> None:
    engine = ConstantEngine(answer="A")
    judge = PairwiseJudge(engine, JudgeConfig("p", "m", protocol="pairwise"))
    result = evaluate_judge(judge, rows()[:1], trained=False)
    assert result.examples == 0 and math.isnan(result.accuracy)
    assert "no two eval responses" in result.undefined["pairs"]


def test_tiny_judge_metrics_are_finite(tiny_engine: TransformersEngine) -> None:
    result = evaluate_judge(PointwiseJudge(tiny_engine, JudgeConfig("t", "tiny")), rows(), False)
    for name in ("alpha_interval", "alpha_ordinal", "pearson", "spearman", "judgements_per_s"):
        assert math.isfinite(getattr(result, name)), name
    assert result.invalid_rate == 0.0


def test_judges_json_replaces_only_the_same_entries(tmp_path: Path) -> None:
    def entry(name: str, trained: bool, alpha: float) -> JudgeEvaluation:
        return JudgeEvaluation(name, trained, "pointwise", False, alpha_interval=alpha)

    update_judges_json(tmp_path, [entry("b", False, 0.1), entry("b", True, 0.2)])
    update_judges_json(tmp_path, [entry("a", False, 0.3)])
    update_judges_json(tmp_path, [entry("b", True, float("nan"))])
    table = json.loads((tmp_path / "judges.json").read_text())
    assert [(e["name"], e["trained"], e["alpha_interval"]) for e in table] == [
        ("a", False, 0.3),
        ("b", False, 0.1),
        ("b", True, None),
    ]
    assert set(table[0]) >= {
        "name", "trained", "protocol", "reasoning", "alpha_interval", "alpha_ordinal", "pearson",
        "spearman", "accuracy", "position_consistency", "invalid_rate", "mean_reasoning_tokens",
        "judgements_per_s", "examples",
    }  # fmt: skip


def test_evaluation_reports_progress_per_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("judgelab.units.judge_eval.CHUNK", 4)
    judge = PointwiseJudge(ConstantEngine(answer="7", probability=1.0), JudgeConfig("c", "m"))
    seen: list[tuple[int, int, str]] = []
    evaluate_judge(judge, rows(), trained=True, progress=lambda *r: seen.append(r))
    assert [(done, total) for done, total, _ in seen] == [(0, 6), (4, 6), (6, 6)]
    assert seen[-1][2] == "eval (trained judge) 6/6 judgements"
