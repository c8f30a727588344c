"""`judgelab run` end to end on a small study: the real command, its own redis-server, the three
services as processes, the learner as a child, the built-in model everywhere; the report's numbers
exist and are finite, and resuming a finished run reruns nothing."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from judgelab.engines.builtin import ensure_builtin
from judgelab.runtime.store import RunStore

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart.yaml"
NAME = "small-study"


def small_experiment(tmp_path: Path) -> Path:
    """The quickstart's shape at the smallest counts that still exercise every stage."""
    raw = yaml.safe_load(QUICKSTART.read_text())
    raw["metadata"]["name"] = NAME
    spec = raw["spec"]
    spec["data"]["splits"] = {
        "judge_train": 6,
        "judge_eval": 4,
        "policy_train": 2,
        "policy_eval": 2,
    }
    spec["data"]["responses"]["max_new_tokens"] = 16
    spec["gold"].update({"reasoning_effort": None})  # one forward pass per gold label
    spec["judges"] = [spec["judges"][0]]
    spec["judges"][0]["training"]["sft"].update({"epochs": 1, "learning_rate": 1e-4})
    spec["policy"]["generation"]["max_new_tokens"] = 8
    spec["policy"]["algorithm"].update({"group_size": 2, "steps": 2, "prompts_per_step": 1})
    spec["evaluation"] = {"every_n_steps": 1, "heldout_prompts": 2}
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _command(*args: str) -> tuple[list[str], dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    return [sys.executable, "-m", "judgelab.cli", *args], env


def judgelab(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command, env = _command(*args)
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=1700)


def launches(run_dir: Path) -> Counter[tuple[str, str]]:
    log = RunStore(run_dir).phase_log()
    return Counter((e["stage"], e["unit"]) for e in log if e["event"] == "UnitLaunched")


def wait_for(path: Path, process: subprocess.Popen[str], limit_s: float = 1500) -> None:
    deadline = time.monotonic() + limit_s
    while not path.exists():
        assert process.poll() is None, "the run ended before TrainPolicy trained a step"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(1)


def numbers(value: Any) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [float(value)]
    if isinstance(value, dict):
        return [n for v in value.values() for n in numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in numbers(v)]
    return []


def test_a_small_study_runs_end_to_end_and_reports_finite_numbers(tmp_path: Path) -> None:
    ensure_builtin("builtin:smollm2-135m-instruct")
    experiment = small_experiment(tmp_path)
    done = judgelab("run", str(experiment), "--runs-dir", str(tmp_path / "runs"), cwd=tmp_path)
    run_dir = tmp_path / "runs" / NAME
    logs = "".join(p.read_text()[-3000:] for p in sorted((run_dir / "logs").glob("*.log")))
    assert done.returncode == 0, done.stderr[-6000:] + logs

    for name in ("report.md", "report.html", "results.json", "judges.json"):
        assert (run_dir / name).is_file(), name
    results = json.loads((run_dir / "results.json").read_text())
    values = numbers(results)
    assert values and all(math.isfinite(v) for v in values)
    report = (run_dir / "report.md").read_text()
    steps = [json.loads(x) for x in (run_dir / "arms/plain/steps.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == [0, 1, 2]
    assert all(s["eval"]["gold_reward_mean"] is not None for s in steps), steps
    assert "plain" in report and list((run_dir / "report").glob("*.png"))
    # Evaluate answered with each arm's last published policy, not the initial one.
    cross = json.loads((run_dir / "evaluate" / "cross_scores.json").read_text())
    assert cross["policy_versions"] == {"plain": 2}, cross["policy_versions"]

    log_lines = (run_dir / "phase-log.jsonl").read_text().count("\n")
    again = judgelab("run", "--resume", str(run_dir), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert (run_dir / "phase-log.jsonl").read_text().count("\n") == log_lines
    status = judgelab("status", str(run_dir), cwd=tmp_path)
    assert status.returncode == 0 and "Succeeded" in status.stdout, status.stdout


def test_a_run_interrupted_during_train_policy_resumes_without_redoing_finished_units(
    tmp_path: Path,
) -> None:
    ensure_builtin("builtin:smollm2-135m-instruct")
    experiment = small_experiment(tmp_path)
    run_dir = tmp_path / "runs" / NAME
    command, env = _command("run", str(experiment), "--runs-dir", str(tmp_path / "runs"))
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(run_dir / "arms" / "plain" / "progress.json", process)  # step 1 of 2 done
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signal.SIGINT, stderr[-3000:]
    assert "resume with: judgelab run --resume" in stderr
    before = launches(run_dir)
    assert before[("annotate", "gold")] == 1 and before[("train-judges", "plain")] == 1

    again = judgelab("run", "--resume", str(run_dir), cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-6000:]
    after = launches(run_dir)
    assert after[("annotate", "gold")] == 1 and after[("train-judges", "plain")] == 1
    # Rerun only if the signal landed while it trained (it may have just finished).
    assert after[("train-policy", "plain")] - before[("train-policy", "plain")] in (0, 1)
    steps = [json.loads(x) for x in (run_dir / "arms/plain/steps.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == [0, 1, 2]
    assert (run_dir / "report.md").is_file()
