"""The Evaluate unit against real gRPC servers on 127.0.0.1 (gold annotator, judge pool) with
constant/hash judges and the tiny policy with published LoRA versions: the files it writes
parse with the report's own readers and the report builds every Evaluate section from them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from rollout_support import lora_model

from judgelab.annotator.cache import MemoryCache
from judgelab.annotator.core import GoldAnnotatorCore
from judgelab.annotator.server import start_gold_annotator_server
from judgelab.engines.base import Conversation, Generation, SamplingParams
from judgelab.engines.constant import ConstantEngine
from judgelab.engines.policy_store import publish_policy_version, run_policy_root
from judgelab.engines.tiny import tiny_engine
from judgelab.evaluation.report import build_report
from judgelab.evaluation.report.evaluate import CrossScores, PairwiseFile, load_outputs
from judgelab.evaluation.report.judges import JudgesFile
from judgelab.judge_pool.pool import JudgePool
from judgelab.judge_pool.server import start_judge_pool_server
from judgelab.judging import JudgeConfig, PairwiseJudge, PointwiseJudge
from judgelab.serving.server import GrpcServer
from judgelab.spec import Experiment, validate_mapping
from judgelab.units.evaluate import NOT_PUBLISHED, run_evaluate
from judgelab.units.evaluate_judges import convert_judges_json
from judgelab.units.evaluate_results import outcome
from judgelab.units.judge_eval import JudgeEvaluation, update_judges_json

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart.yaml"
PROMPTS = [
    {"prompt": "Name a prime number.", "reference": "2"},
    {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]},
    {"prompt": "What colour is the sky?", "reference": "Blue."},
    {"prompt": "Count to three.", "reference": "1 2 3"},
]
# ConstantEngine: 0.9 on "7", 0.1 shared by the other nine scores.
CONSTANT_EXPECTED = 0.9 * 7 + 0.1 / 9 * (sum(range(10)) - 7)


def experiment(**evaluation: Any) -> Experiment:
    spec = yaml.safe_load(QUICKSTART.read_text())
    pairs = {
        "name": "pairs",
        "model": {"name": "builtin:smollm2-135m-instruct"},
        "protocol": "pairwise",
    }
    spec["spec"]["judges"].append(pairs)
    spec["spec"]["data"]["responses"]["per_prompt"] = 2
    spec["spec"]["policy"]["generation"]["max_new_tokens"] = 12
    spec["spec"]["evaluation"].update({"heldout_prompts": 3, **evaluation})
    return validate_mapping(spec, str(QUICKSTART))


class HashGold(ConstantEngine):
    """A gold model whose verdict is a digit hashed from what it is shown: varied, repeatable."""

    def generate(
        self, conversations: Sequence[Conversation], params: SamplingParams
    ) -> list[Generation]:
        self._served()
        return [self._verdict(c) for c in conversations]

    def _verdict(self, conversation: Conversation) -> Generation:
        shown = "".join(m.content for m in conversation).encode()
        digit = int(hashlib.sha256(shown).hexdigest(), 16) % 10
        text = f"Judged.\nScore: {digit}"
        return Generation(text, [], [0.0] * 3, "stop", self.count_tokens(conversation))


@dataclass
class Services:
    gold: GrpcServer
    pool: GrpcServer
    core: GoldAnnotatorCore


@pytest.fixture
def services() -> Iterator[Services]:
    exp = experiment()
    core = GoldAnnotatorCore(
        PointwiseJudge(HashGold(), JudgeConfig.from_gold_spec(exp.spec.gold)), cache=MemoryCache()
    )
    pool = JudgePool()
    for spec in exp.spec.judges:
        config = JudgeConfig.from_proxy_spec(spec)
        if spec.name == "reasoning":  # served under another name: Evaluate must not fail
            continue
        judge = (PairwiseJudge if spec.protocol == "pairwise" else PointwiseJudge)(
            ConstantEngine(), config
        )
        pool.add(spec.name, judge, max_batch=8)
    served = Services(start_gold_annotator_server(core), start_judge_pool_server(pool), core)
    yield served
    served.gold.stop(grace_s=1)
    served.pool.stop(grace_s=1)
    core.close()
    pool.close()


def write_policy_eval(run_dir: Path) -> None:
    lines = [
        {"id": f"r{i}", "row": i, "split": "policy_eval", "reference": None, **p}
        for i, p in enumerate(PROMPTS)
    ]
    folder = run_dir / "annotate"
    folder.mkdir(parents=True)
    text = "".join(json.dumps(line) + "\n" for line in lines)
    (folder / "policy_eval.jsonl").write_text(text)


def publish(run_dir: Path, arm: str, versions: Sequence[int]) -> None:
    base = tiny_engine(seed=0).model
    for version in versions:
        adapted = lora_model(base, seed=10 + version)
        publish_policy_version(run_policy_root(run_dir, arm), version, adapted)


def judge_evaluations(run_dir: Path) -> None:
    """What TrainJudges leaves: judge_eval's flat list, trained and untrained entries."""
    rows = [
        JudgeEvaluation("plain", False, "pointwise", False, pearson=0.1, judgements_per_s=20.0),
        JudgeEvaluation("plain", True, "pointwise", False, 0.5, 0.4, 0.6, 0.55, examples=16),
        JudgeEvaluation("pairs", True, "pairwise", False, accuracy=0.7, invalid_rate=0.1),
    ]
    update_judges_json(run_dir, rows)


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_evaluate_writes_what_the_report_reads(tmp_path: Path, services: Services) -> None:
    exp = experiment()
    write_policy_eval(tmp_path)
    publish(tmp_path, "plain", [1, 2])
    publish(tmp_path, "pairs", [1])
    judge_evaluations(tmp_path)
    seen: list[tuple[int, int, str]] = []

    summary = run_evaluate(
        exp,
        tmp_path,
        services.gold.address,
        services.pool.address,
        progress=lambda done, total, note: seen.append((done, total, note)),
        policy_engine_factory=lambda: tiny_engine(seed=0),
    )

    assert summary.versions == {"plain": 2, "reasoning": 0, "pairs": 1}
    assert summary.notes == {"reasoning": NOT_PUBLISHED}
    assert summary.prompts == 3
    # Sources: initial, plain, pairs (reasoning keeps the initial outputs); 3 prompts each;
    # scorers: gold, plain, reasoning (found unserved; pairs is pairwise, never asked).
    for step, total in (("generate", 3 * 3), ("score", 9 * 3)):
        notes = [s for s in seen if s[2].startswith(step)]
        assert notes[-1][:2] == (total, total) and "/s" in notes[-1][2]

    folder = tmp_path / "evaluate"
    cross = CrossScores.load(folder / "cross_scores.json")
    assert set(cross.scores) == {"gold", "plain", "reasoning", "pairs"}
    assert set(cross.scores["gold"]) == {"plain", "reasoning", "pairs"}
    assert cross.scores["pairs"] == dict.fromkeys(("plain", "reasoning", "pairs"))
    assert cross.scores["reasoning"] == dict.fromkeys(("plain", "reasoning", "pairs"))
    raw = json.loads((folder / "cross_scores.json").read_text())
    assert "pairwise" in raw["skipped"]["pairs"] and "not served" in raw["skipped"]["reasoning"]
    assert raw["policy_versions"] == summary.versions

    outputs = {arm: load_outputs(folder / "outputs" / f"{arm}.jsonl") for arm in summary.versions}
    rows = {arm: read_lines(folder / "outputs" / f"{arm}.jsonl") for arm in summary.versions}
    for records in outputs.values():
        assert [r.stage for r in records] == ["start"] * 3 + ["end"] * 3
        assert [r.prompt for r in records[:3]] == [
            "Name a prime number.",
            "[system]\nBe brief.\n\n[user]\nHi",
            "What colour is the sky?",
        ]
        starts = [r.response for r in records[:3]]
        assert starts == [r.response for r in outputs["plain"][:3]]  # one initial policy
    ends = {arm: [r.response for r in records[3:]] for arm, records in outputs.items()}
    assert ends["reasoning"] == [r.response for r in outputs["reasoning"][:3]]
    assert ends["plain"] != ends["reasoning"] and ends["pairs"] != ends["plain"]
    assert {r["policy_version"] for r in rows["plain"][3:]} == {2}

    for arm in summary.versions:
        end_gold = [r["gold"] for r in rows[arm][3:] if r["gold"] is not None]
        expected = sum(end_gold) / len(end_gold) if end_gold else None
        assert cross.scores["gold"][arm] == pytest.approx(expected)
        if end_gold:
            assert cross.scores["plain"][arm] == pytest.approx(CONSTANT_EXPECTED)
    assert raw["initial"]["plain"] == pytest.approx(CONSTANT_EXPECTED)

    pairwise = PairwiseFile.load(folder / "pairwise.json")
    assert pairwise.judge == "gold (pointwise scores compared)"
    assert pairwise.baseline == "initial policy"
    for arm in summary.versions:
        start, end = rows[arm][:3], rows[arm][3:]
        want = [
            outcome(s["gold"], e["gold"])
            for s, e in zip(start, end, strict=True)
            if s["gold"] is not None and e["gold"] is not None
        ]
        credit = {"win": 1.0, "tie": 0.5, "loss": 0.0}
        assert pairwise.credits[arm] == tuple(credit[o] for o in want)
    assert set(pairwise.credits["reasoning"]) <= {0.5}  # unchanged policy: ties only

    judges = JudgesFile.load(tmp_path / "judges.json")
    by_name = {j.name: j for j in judges.judges}
    assert set(by_name) == {"plain", "pairs"} and judges.scale == (0.0, 9.0)
    assert by_name["plain"].agreement["alpha_interval"] == 0.5  # the trained entry
    assert by_name["plain"].tokens_per_judgement is not None  # measured by Evaluate's calls
    assert by_name["pairs"].agreement["accuracy"] == 0.7 and by_name["pairs"].protocol == "pairwise"
    kept = json.loads((tmp_path / "judges.json").read_text())["evaluations"]
    assert len(kept) == 3

    result = build_report(tmp_path)
    sections = json.loads(result.results.read_text())["sections"]
    for title in (
        "Cross-judge matrix",
        "Pairwise win rate against the baseline",
        "Judges: agreement with gold, invalid rate, cost",
        "Adversarial patterns in the policy's outputs",
        "Sample outputs, start vs end of training",
    ):
        assert sections[title] == "ok", title
    assert (tmp_path / "report" / "cross_judge_heatmap.png").is_file()


def test_converting_judges_json_again_gives_the_same_file(tmp_path: Path) -> None:
    judge_evaluations(tmp_path)
    exp = experiment()
    assert convert_judges_json(tmp_path, exp, {}) is not None
    first = (tmp_path / "judges.json").read_text()
    convert_judges_json(tmp_path, exp, {})
    assert (tmp_path / "judges.json").read_text() == first
    record = json.loads(first)["judges"][1]
    assert record["name"] == "plain" and record["untrained"]["pearson"] == 0.1
    assert record["seconds_per_judgement"] is None  # trained entry has no rate, no calls


def test_outcomes_tie_within_half_a_point() -> None:
    assert [outcome(5.0, e) for e in (5.5, 5.51, 4.5, 4.49)] == ["tie", "win", "tie", "loss"]


def test_missing_held_out_prompts_name_the_file(tmp_path: Path) -> None:
    from judgelab.units.evaluate import EvaluateError

    with pytest.raises(EvaluateError, match="policy_eval.jsonl"):
        run_evaluate(experiment(), tmp_path, "127.0.0.1:1", "127.0.0.1:1")


def test_a_cancelled_run_stops_before_sampling(tmp_path: Path) -> None:
    import threading

    from judgelab.units.responses import Cancelled

    write_policy_eval(tmp_path)
    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled):
        run_evaluate(
            experiment(),
            tmp_path,
            "127.0.0.1:1",
            "127.0.0.1:1",
            progress=lambda *_: None,
            policy_engine_factory=lambda: tiny_engine(seed=0),
            cancelled=stop,
        )
    assert not (tmp_path / "evaluate").exists()
