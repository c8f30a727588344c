"""TrainPolicy through the local runtime for real: its own redis-server, the gold annotator, judge
pool and rollout generator as `judgelab serve` processes, the learner as a supervised child on
the built-in model; 2 GRPO steps with a gold evaluation at steps 0, 1 and 2."""

from __future__ import annotations

import io
import json
import math
import os
import time
from pathlib import Path

import pytest
import yaml
from test_runtime_run import _leftovers

from judgelab.engines.policy_store import PolicyStore
from judgelab.evaluation.report.steps import load_steps
from judgelab.learner.feeder import PUSHED_FILE
from judgelab.phases import RetryPolicy, Stage
from judgelab.runtime import Unit, UnitContext, run_experiment
from judgelab.runtime.progress import PlainProgress
from judgelab.runtime.train_policy import run_train_policy

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart.yaml"
NAME = "tp"
PROMPTS = ["What is 2 + 2?", "Name a primary colour.", "Say hello in French."]


def tiny_experiment(tmp_path: Path) -> Path:
    raw = yaml.safe_load(QUICKSTART.read_text())
    raw["metadata"]["name"] = NAME
    spec = raw["spec"]
    spec["data"]["splits"] = {
        "judge_train": 2,
        "judge_eval": 1,
        "policy_train": 3,
        "policy_eval": 2,
    }
    spec["gold"].update({"reasoning_effort": None, "max_tokens": 16})
    spec["judges"] = [spec["judges"][0]]  # "plain": one forward pass per judgement
    spec["policy"]["generation"]["max_new_tokens"] = 8
    spec["policy"]["algorithm"].update({"group_size": 2, "steps": 2, "prompts_per_step": 1})
    spec["evaluation"] = {"every_n_steps": 1, "heldout_prompts": 2}
    spec["runtime"]["run_dir"] = str(tmp_path)
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def write_splits(run_dir: Path) -> None:
    out = run_dir / "annotate"
    out.mkdir(parents=True)
    for split, rows in (("policy_train", PROMPTS), ("policy_eval", PROMPTS[:2])):
        lines = [
            {"id": f"{split}-{i}", "row": i, "split": split, "prompt": p, "reference": None}
            for i, p in enumerate(rows)
        ]
        (out / f"{split}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


def _done(context: UnitContext, unit: Unit) -> None:
    (context.unit_dir(unit) / "done.txt").write_text("ok")


def test_train_policy_unit_trains_and_gold_evaluates_an_arm(
    tmp_path: Path, builtin_dir: Path
) -> None:
    experiment = tiny_experiment(tmp_path)
    run_dir = tmp_path / NAME
    write_splits(run_dir)
    runners = {stage: _done for stage in Stage} | {Stage.TRAIN_POLICY: run_train_policy}
    log = io.StringIO()
    env_url = os.environ.pop("REDIS_URL", None)
    began = time.monotonic()
    try:
        state = run_experiment(
            experiment,
            run_dir,
            runners,
            retry_policy=RetryPolicy(max_attempts=1),
            progress=PlainProgress(log),
            grace_s=20.0,
        )
    finally:
        if env_url is not None:
            os.environ["REDIS_URL"] = env_url
    seconds = time.monotonic() - began
    learner_log = run_dir / "logs" / "learner-plain.log"
    detail = log.getvalue() + (learner_log.read_text()[-4000:] if learner_log.exists() else "")
    assert state.phase == "Succeeded", detail

    steps_file = run_dir / "arms" / "plain" / "steps.jsonl"
    lines = [json.loads(x) for x in steps_file.read_text().splitlines()]
    assert [x["step"] for x in lines] == [0, 1, 2]
    assert lines[0]["kl"] == 0.0
    for line in lines:
        assert math.isfinite(line["kl"]) and line["kl"] >= -1e-6
        evaluation = line["eval"]
        assert len(evaluation["samples"]) == 2
        proxy = evaluation["proxy_reward_mean"]
        assert proxy is not None and 0.0 <= proxy <= 9.0, evaluation
        # The built-in gold writing 16 tokens is often cut short before its score: an invalid
        # gold label is recorded as such (null, counted), never as a number.
        gold = evaluation["gold_reward_mean"]
        valid = [s["gold"] for s in evaluation["samples"] if s["gold"] is not None]
        assert evaluation["gold_invalid"] == 2 - len(valid)
        assert (gold is None and not valid) or (0.0 <= gold <= 9.0 and math.isfinite(gold))
    assert [r.step for r in load_steps(steps_file)] == [0, 1, 2]  # the report reads it
    for line in lines[1:]:
        assert math.isfinite(line["proxy_reward_mean"]) and len(line["group_ids"]) == 1

    store = PolicyStore(run_dir / "policy" / "plain")
    assert 2 in store.versions() and (run_dir / "policy" / "plain" / "v2").is_dir()
    pushed = json.loads((run_dir / "arms" / "plain" / PUSHED_FILE).read_text())  # the learner fed
    assert pushed == {"pushed_steps": 2, "replaced": []}  # nothing dropped, nothing replaced
    arm = next(a for a in state.arms if a.name == "plain")
    assert arm.step == 2 and arm.kl == lines[2]["kl"]
    assert arm.gold_reward == lines[2]["eval"]["gold_reward_mean"]
    assert "[train-policy] unit 1/1 plain" in log.getvalue()
    assert _leftovers(run_dir) == []
    print(f"train-policy run (services + learner, 2 steps, 3 gold evaluations): {seconds:.1f} s")
