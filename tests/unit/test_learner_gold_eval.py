"""The learner's gold evaluator: the tiny policy's samples scored by a gold annotator and a judge
pool on real in-process gRPC servers (constant engines), and the loop recording them per step."""

from __future__ import annotations

import dataclasses
import json
import math
import random
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from judge_pool_support import constant_pool, running

from judgelab.annotator.cache import MemoryCache
from judgelab.annotator.core import GoldAnnotatorCore
from judgelab.annotator.server import start_gold_annotator_server
from judgelab.engines.base import ChatMessage, SamplingParams
from judgelab.engines.constant import ConstantEngine
from judgelab.engines.tiny import tiny_model, tiny_tokenizer
from judgelab.evaluation.report.steps import load_steps
from judgelab.judging import JudgeConfig, PointwiseJudge
from judgelab.learner.batch import TrainGroup, prompt_token_ids
from judgelab.learner.eval_clients import GoldScorer, JudgeScorer
from judgelab.learner.gold_eval import EvalSettings, GoldEvaluator, HeldOutPrompt, load_heldout
from judgelab.learner.loop import LearnerLoop, LoopConfig
from judgelab.learner.settings import LoraSettings, TrainerSettings
from judgelab.learner.source import Pending
from judgelab.learner.trainer import GrpoTrainer

TOKENIZER = tiny_tokenizer()
G = 2
SETTINGS = TrainerSettings(
    group_size=G,
    learning_rate=5e-2,
    max_staleness=1,
    temperature=0.7,
    seed=0,
    lora=LoraSettings(r=4, alpha=8, dropout=0.1, target_modules=("q_proj", "v_proj")),
)
PROMPTS = [
    HeldOutPrompt("e1", "What is the capital of France?", "Paris."),
    HeldOutPrompt("e2", [ChatMessage("system", "Be brief."), ChatMessage("user", "Name a color.")]),
]
EVAL = EvalSettings(
    sampling=SamplingParams(max_new_tokens=6, temperature=0.7, seed=7),
    samples_per_prompt=2,
)


@dataclasses.dataclass
class Scorers:
    gold: GoldScorer
    proxy: JudgeScorer


@pytest.fixture(scope="module")
def scorers() -> Iterator[Scorers]:
    gold_judge = PointwiseJudge(ConstantEngine(answer="4"), JudgeConfig(name="gold", model="c"))
    core = GoldAnnotatorCore(gold_judge, cache=MemoryCache(), max_batch=8)
    gold_server = start_gold_annotator_server(core)
    with running(constant_pool()) as pool:
        both = Scorers(
            GoldScorer(gold_server.address, "demo"),
            JudgeScorer(pool.server.address, "plain", "demo"),
        )
        yield both
        both.gold.close()
        both.proxy.close()
    gold_server.stop(grace_s=1)
    core.close()


def trainer() -> GrpoTrainer:
    return GrpoTrainer(tiny_model(len(TOKENIZER), seed=0), TOKENIZER.pad_token_id, SETTINGS)


def test_evaluator_samples_the_current_policy_and_scores_with_gold_and_proxy(
    scorers: Scorers,
) -> None:
    t = trainer()
    evaluator = GoldEvaluator(PROMPTS, TOKENIZER, scorers.gold, scorers.proxy, EVAL)
    result = evaluator(0, t)
    samples = result["samples"]
    assert [s["prompt"] for s in samples] == [
        "What is the capital of France?",
        "What is the capital of France?",
        "Name a color.",
        "Name a color.",
    ]
    # Constant engines: gold puts 0.9 on "4", proxy 0.9 on "7"; the rest spread over the scale.
    gold, proxy = result["gold_reward_mean"], result["proxy_reward_mean"]
    assert 3.5 < gold < 4.5 and 6.0 < proxy < 7.5
    assert all(
        s["gold"] == pytest.approx(gold) and s["proxy"] == pytest.approx(proxy) for s in samples
    )
    assert result["gold_reward"] == pytest.approx(gold / 9) and result["gold_invalid"] == 0
    assert result["proxy_reward"] == pytest.approx(proxy / 9)
    assert all(isinstance(s["response"], str) for s in samples)
    assert t.policy.training  # the learner trains on with dropout back on
    again = evaluator(0, t)
    assert [s["response"] for s in again["samples"]] == [s["response"] for s in samples]


def test_evaluator_generates_with_the_trained_weights(scorers: Scorers) -> None:
    t = trainer()
    evaluator = GoldEvaluator(PROMPTS[:1], TOKENIZER, scorers.gold, None, EVAL)
    before = evaluator(0, t)["samples"]
    with torch.no_grad():
        for name, param in t.params.items():
            if "lora_B" in name:
                param.add_(torch.randn_like(param) * 5)
    after = evaluator(1, t)
    assert [s["response"] for s in after["samples"]] != [s["response"] for s in before]
    assert after["proxy_reward_mean"] is None and all(s["proxy"] is None for s in after["samples"])


def test_heldout_file_reads_the_first_n_and_names_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "policy_eval.jsonl"
    rows = [
        {"id": "a", "row": 1, "split": "policy_eval", "prompt": "One?", "reference": "1"},
        {"id": "b", "row": 2, "split": "policy_eval",
         "prompt": [{"role": "user", "content": "Two?"}], "reference": None},
        {"id": "c", "row": 3, "split": "policy_eval", "prompt": "Three?", "reference": None},
    ]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    loaded = load_heldout(path, 2)
    assert [p.id for p in loaded] == ["a", "b"] and loaded[1].text == "Two?"
    assert loaded[0].reference == "1"
    path.write_text('{"id": "a"}\n')
    with pytest.raises(ValueError, match="policy_eval.jsonl:1"):
        load_heldout(path)


class ListSource:
    """Groups from a list, for the loop without Redis."""

    def __init__(self, groups: list[TrainGroup]) -> None:
        self.groups = groups

    def read(self, count: int, block_ms: int) -> list[Pending]:
        taken, self.groups = self.groups[:count], self.groups[count:]
        delivery: Any = SimpleNamespace(id="0-1")
        return [Pending(g, delivery, delivery, None) for g in taken]

    def already_done(self, group_id: str) -> bool:
        return False

    def ack(self, pending: Pending) -> None:
        pass


def groups(step: int) -> list[TrainGroup]:
    rng = random.Random(step)
    prompt = tuple(prompt_token_ids(TOKENIZER, f"question {step}"))
    completions = tuple(tuple(rng.randrange(3, len(TOKENIZER)) for _ in range(4)) for _ in range(G))
    return [TrainGroup(f"g{step}", step - 1, prompt, completions, (1.0, 5.0))]


def test_loop_records_eval_at_step_zero_and_every_n_in_the_report_schema(
    scorers: Scorers, tmp_path: Path
) -> None:
    def make() -> LearnerLoop:
        evaluator = GoldEvaluator(PROMPTS, TOKENIZER, scorers.gold, scorers.proxy, EVAL)
        source = ListSource([g for step in (1, 2) for g in groups(step)])
        config = LoopConfig("arm-a", total_steps=2, prompts_per_step=1, eval_every=1)
        return LearnerLoop(trainer(), source, None, tmp_path, config, evaluator=evaluator)

    loop = make()
    loop.run()
    records = load_steps(tmp_path / "steps.jsonl")  # the report's own reader
    assert [r.step for r in records] == [0, 1, 2]
    assert records[0].kl == 0.0 and records[0].proxy_reward_mean is None
    for record in records:
        assert record.eval is not None and len(record.eval.samples) == 4
        assert record.eval.gold_reward_mean is not None and math.isfinite(
            record.eval.gold_reward_mean
        )
    assert records[1].proxy_reward_mean == pytest.approx(3.0) and records[2].kl is not None
    lines = [json.loads(x) for x in (tmp_path / "steps.jsonl").read_text().splitlines()]
    assert lines[0]["eval"]["best_gold_step"] == 0 and "evaluation" not in lines[1]
    # A rerun before any checkpoint keeps the step-0 evaluation and drops the rest.
    (tmp_path / "checkpoints").rename(tmp_path / "old-checkpoints")
    rerun = make()
    assert rerun.resume() is None
    assert [json.loads(x)["step"] for x in (tmp_path / "steps.jsonl").read_text().splitlines()] == [
        0
    ]
    rerun.run()
    assert [r.step for r in load_steps(tmp_path / "steps.jsonl")] == [0, 1, 2]
    assert rerun.tracker.best_gold_step is not None
