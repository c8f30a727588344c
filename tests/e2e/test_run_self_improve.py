"""`judgelab run` end to end on a tiny dpo-self-judge study: its own redis-server, the services
as processes, the built-in model; every stage runs (Annotate: splits only), each arm's gold win
rate vs the start and the DPO round numbers reach the report, all finite."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
import yaml

from judgelab.engines.builtin import ensure_builtin
from judgelab.runtime.store import RunStore
from tests.e2e.test_run_study import judgelab, numbers

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "self-improve.yaml"
NAME = "tiny-self-improve"
ARMS = ("self-judge", "sft-on-references", "reference-free")
STAGES = ("annotate", "train-policy", "evaluate")


def tiny_experiment(tmp_path: Path) -> Path:
    """The example's shape at the smallest counts that still train and evaluate every arm."""
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw["metadata"]["name"] = NAME
    spec = raw["spec"]
    spec["data"]["splits"] = {
        "judge_train": 1,
        "judge_eval": 1,
        "policy_train": 4,
        "policy_eval": 2,
    }
    spec["gold"].update({"reasoning_effort": None})  # one forward pass per gold label
    spec["policy"]["generation"]["max_new_tokens"] = 8
    spec["policy"]["algorithm"].update({"num_candidates": 2, "rounds": 1, "batch_size": 2})
    spec["evaluation"] = {"heldout_prompts": 2, "seed": 0}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_a_tiny_self_improvement_study_runs_end_to_end(tmp_path: Path) -> None:
    ensure_builtin("builtin:smollm2-135m-instruct")
    started = time.monotonic()
    done = judgelab("run", str(tiny_experiment(tmp_path)), "--runs-dir", str(tmp_path / "runs"),
                    cwd=tmp_path)  # fmt: skip
    seconds = time.monotonic() - started
    run_dir = tmp_path / "runs" / NAME
    logs = "".join(p.read_text()[-3000:] for p in sorted((run_dir / "logs").glob("*.log")))
    assert done.returncode == 0, done.stderr[-6000:] + logs
    print(f"judgelab run (tiny self-improve): {seconds:.1f} s")

    log = RunStore(run_dir).phase_log()
    succeeded = {(e["stage"], e["unit"]) for e in log if e["event"] == "UnitSucceeded"}
    assert {s for s, _ in succeeded} == set(STAGES), log
    assert ("annotate", "splits") in succeeded and ("evaluate", "report") in succeeded
    assert {u for s, u in succeeded if s == "train-policy"} == set(ARMS)
    assert (run_dir / "annotate" / "policy_eval.jsonl").read_text().count("\n") == 2

    results = json.loads((run_dir / "results.json").read_text())
    assert all(math.isfinite(v) for v in numbers(results))
    arms = results["self_improve"]["arms"]
    assert set(arms) == set(ARMS)
    for arm in ARMS:
        rate = arms[arm]["win_rate"]
        assert rate is not None and 0.0 <= rate["low"] <= rate["rate"] <= rate["high"] <= 1.0
    for arm in ("self-judge", "reference-free"):
        (round_one,) = arms[arm]["rounds"]
        assert round_one["pairs"] + round_one["ties"] == 4
        assert round_one["comparisons"] == 4 * 2 and round_one["comparisons_per_second"] > 0
        assert round_one["dpo_steps"] == 0 or math.isfinite(round_one["dpo_loss_last"])
    agreement = results["self_improve"]["judge_agreement"]
    assert agreement["pairs"] == 0 or agreement["with_reference"]["pairs"] == agreement["pairs"]
    report = (run_dir / "report.md").read_text()
    assert "Self-improvement: gold win rate of each arm" in report
    assert (run_dir / "report" / "self_improve_win_rate.png").is_file()
