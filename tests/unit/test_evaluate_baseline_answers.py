"""Evaluate with ``evaluation.baseline_answers``: the win rate is against the file's answers
(scored by gold only), labelled with the file, in ``pairwise.json``, the summary, the report
and ``results.json`` — for a GRPO study (real gRPC gold annotator and judge pool on 127.0.0.1,
the tiny policy with a published LoRA version) and for the dpo-self-judge arms."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_units_evaluate import HashGold, Services, experiment, publish, write_policy_eval

from judgelab.annotator.cache import MemoryCache
from judgelab.annotator.core import GoldAnnotatorCore
from judgelab.annotator.server import start_gold_annotator_server
from judgelab.engines.base import Conversation, Generation, SamplingParams
from judgelab.engines.constant import ConstantEngine
from judgelab.engines.tiny import tiny_engine
from judgelab.evaluation.report import build_report
from judgelab.judge_pool.pool import JudgePool
from judgelab.judge_pool.server import start_judge_pool_server
from judgelab.judging import JudgeConfig, PairwiseJudge, PointwiseJudge
from judgelab.selfimprove.prompts import load_policy_rows
from judgelab.spec import Experiment, validate_mapping
from judgelab.units.annotate import run_annotate
from judgelab.units.baseline_answers import BaselineAnswersError
from judgelab.units.evaluate import run_evaluate
from judgelab.units.evaluate_results import outcome
from judgelab.units.evaluate_self_improve import evaluate_self_improve
from tests.unit.selfimprove_support import LengthGold, QualityJudgeEngine
from tests.unit.test_selfimprove_evaluate_report import (
    NoGold,
    NoModel,
    _write_arm,
    capped_closeness,
)

SELF_IMPROVE = Path(__file__).resolve().parents[2] / "examples" / "self-improve.yaml"
CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
BASELINE_ROWS = [
    {"id": "r0", "answer": "Seven is a prime number."},
    {"prompt": CHAT, "answer": "Hello! How can I help?"},  # matched by the chat's text
    {"prompt": "What colour is the sky?", "answer": "Blue, on a clear day."},
]


class SeenGold(HashGold):
    """HashGold that keeps every conversation it judged."""

    seen: list[str] = []

    def generate(
        self, conversations: Sequence[Conversation], params: SamplingParams
    ) -> list[Generation]:
        self.seen.extend("".join(m.content for m in c) for c in conversations)
        return super().generate(conversations, params)


@pytest.fixture
def grpo_services() -> Iterator[Services]:
    exp = experiment()
    gold = SeenGold()
    core = GoldAnnotatorCore(
        PointwiseJudge(gold, JudgeConfig.from_gold_spec(exp.spec.gold)), cache=MemoryCache()
    )
    pool = JudgePool()
    for spec in exp.spec.judges:
        judge = (PairwiseJudge if spec.protocol == "pairwise" else PointwiseJudge)(
            ConstantEngine(), JudgeConfig.from_proxy_spec(spec)
        )
        pool.add(spec.name, judge, max_batch=8)
    served = Services(start_gold_annotator_server(core), start_judge_pool_server(pool), core)
    yield served
    served.gold.stop(grace_s=1)
    served.pool.stop(grace_s=1)
    core.close()
    pool.close()


def write_baseline(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_grpo_win_rate_is_against_the_files_answers(
    tmp_path: Path, grpo_services: Services
) -> None:
    answers = write_baseline(tmp_path / "answers.jsonl", BASELINE_ROWS)
    exp = experiment(baseline_answers=str(answers))
    write_policy_eval(tmp_path)
    publish(tmp_path, "plain", [1])
    seen: list[tuple[int, int, str]] = []
    SeenGold.seen = []
    summary = run_evaluate(
        exp,
        tmp_path,
        grpo_services.gold.address,
        grpo_services.pool.address,
        progress=lambda done, total, note: seen.append((done, total, note)),
        policy_engine_factory=lambda: tiny_engine(seed=0),
    )
    label = f"baseline answers: {answers}"
    assert summary.baseline == label and f"win rate vs {label}" in summary.format()
    for row in BASELINE_ROWS:  # gold judged every baseline answer
        assert any(row["answer"] in shown for shown in SeenGold.seen)
    # initial + plain outputs (3 each) by gold and 2 pointwise judges, + 3 answers by gold only
    assert [s[:2] for s in seen if s[2].startswith("score")][-1] == (6 * 3 + 3, 6 * 3 + 3)

    folder = tmp_path / "evaluate"
    pairwise = json.loads((folder / "pairwise.json").read_text())
    assert pairwise["baseline"] == label
    base = pairwise["baseline_gold"]
    assert set(base) == {"r0", "r1", "r2"} and all(v is not None for v in base.values())
    for arm in ("plain", "reasoning", "pairs"):
        lines = (folder / "outputs" / f"{arm}.jsonl").read_text().splitlines()
        end = [json.loads(x) for x in lines if json.loads(x)["stage"] == "end"]
        want = [(r["prompt_id"], outcome(base[r["prompt_id"]], r["gold"])) for r in end]
        assert list(zip(pairwise["prompt_ids"][arm], pairwise["arms"][arm], strict=True)) == want
    start = [json.loads(x) for x in (folder / "outputs" / "plain.jsonl").read_text().splitlines()]
    want_initial = [outcome(base[r["prompt_id"]], r["gold"]) for r in start[:3]]
    assert pairwise["initial"]["outcomes"] == want_initial
    assert json.loads((folder / "summary.json").read_text())["baseline"] == label

    result = build_report(tmp_path)
    results = json.loads(result.results.read_text())
    assert results["sections"]["Pairwise win rate against the baseline"] == "ok"
    assert results["pairwise"]["baseline"] == label
    assert results["pairwise"]["initial_policy"]["n"] == len(want_initial)
    report = result.markdown.read_text()
    assert f"baseline: {label}" in report and "| initial policy |" in report


def test_grpo_stops_before_sampling_when_a_prompt_has_no_answer(tmp_path: Path) -> None:
    answers = write_baseline(tmp_path / "answers.jsonl", BASELINE_ROWS[:1])
    write_policy_eval(tmp_path)

    def no_policy() -> Any:
        raise AssertionError("sampled before checking the baseline answers")

    with pytest.raises(BaselineAnswersError, match=r"2 of 3 held-out prompts.*ids r1, r2"):
        run_evaluate(
            experiment(baseline_answers=str(answers)),
            tmp_path,
            "127.0.0.1:1",
            "127.0.0.1:1",
            progress=lambda *_: None,
            policy_engine_factory=no_policy,
        )
    assert not (tmp_path / "evaluate").exists()


def self_improve_experiment(baseline: Path) -> Experiment:
    raw = yaml.safe_load(SELF_IMPROVE.read_text())
    raw["spec"]["data"]["splits"] = {
        "judge_train": 1,
        "judge_eval": 1,
        "policy_train": 2,
        "policy_eval": 3,
    }
    raw["spec"]["evaluation"].update({"heldout_prompts": 3, "baseline_answers": str(baseline)})
    return validate_mapping(raw, str(SELF_IMPROVE))


def quiet(_done: int, _total: int, _note: str) -> None:
    pass


def test_dpo_self_judge_arms_get_a_win_rate_against_the_file(tmp_path: Path) -> None:
    answers_path = tmp_path / "answers.jsonl"
    spec = self_improve_experiment(answers_path)
    run_annotate(spec, tmp_path, annotator=NoGold(), policy_engine=NoModel(), progress=quiet)
    _, held_out = load_policy_rows(tmp_path, spec)
    good = {"self-judge": True, "sft-on-references": True, "reference-free": False}
    for arm, is_good in good.items():
        _write_arm(tmp_path, arm, held_out, good=is_good)  # end gold 9 (good) or 2; start 5
    gold = LengthGold()  # gold = answer length: these 5-character answers score 5
    write_baseline(answers_path, [{"id": row.id, "answer": "abcde"} for row in held_out[1:]])
    with pytest.raises(BaselineAnswersError, match=f"1 of 3 .*ids {held_out[0].id}$"):
        evaluate_self_improve(spec, tmp_path, tmp_path / "evaluate", gold, quiet)
    assert gold.samples == []  # refused before any gold call

    write_baseline(answers_path, [{"id": row.id, "answer": "abcde"} for row in held_out])
    judge = QualityJudgeEngine(capped_closeness)
    doc = evaluate_self_improve(spec, tmp_path, tmp_path / "evaluate", gold, quiet, lambda: judge)
    label = f"baseline answers: {answers_path}"
    versus = doc["versus_baseline_answers"]
    assert versus["baseline"] == label and versus["baseline_gold_mean"] == 5.0
    outcomes = {name: row["outcomes"] for name, row in versus["rows"].items()}
    assert outcomes["self-judge"] == {"win": 3, "tie": 0, "loss": 0}
    assert outcomes["reference-free"] == {"win": 0, "tie": 0, "loss": 3}
    assert outcomes["starting policy"] == {"win": 0, "tie": 3, "loss": 0}
    assert doc["notes"] == []

    result = build_report(tmp_path)
    results = json.loads(result.results.read_text())["self_improve"]
    assert results["versus_baseline_answers"]["baseline"] == label
    assert results["arms"]["self-judge"]["win_rate_vs_baseline_answers"]["rate"] == 1.0
    assert results["arms"]["reference-free"]["win_rate_vs_baseline_answers"]["rate"] == 0.0
    assert results["versus_baseline_answers"]["starting_policy"]["rate"] == 0.5
    report = result.markdown.read_text()
    assert "win rate vs baseline answers" in report and label in report
