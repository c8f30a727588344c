"""The TrainPolicy unit of one arm: the learner as a child process, followed to the end.

The stage's services (gold annotator, judge pool, rollout generator) already run with the
runtime's Redis: the learner feeds its steps' prompts to ``jl:{exp}:prompts`` itself
(``--feed-prompts``, see ``judgelab.learner.feeder``), the generator turns them into rollout
groups, the judge pool scores them, and the learner trains on the scored groups, publishes
versions and gold-evaluates its policy (addresses of the annotator and the judge pool on its
command line). This unit follows the learner's ``progress.json`` for progress and status; a
rerun after a crash starts the learner again, which resumes from its checkpoint.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from judgelab.learner.feeder import TRAIN_PROMPTS
from judgelab.phases import ArmProgress
from judgelab.phases.stages import ANNOTATOR, JUDGE_POOL
from judgelab.runtime.context import UnitContext
from judgelab.runtime.progress import Unit
from judgelab.runtime.unit_process import watch_child
from judgelab.spec import Experiment
from judgelab.spec.policy import GrpoAlgorithm


def run_train_policy(context: UnitContext, unit: Unit) -> None:
    """Train arm ``unit.name`` to ``policy.algorithm.steps``; raises if the learner fails."""
    experiment = context.experiment
    algorithm = experiment.spec.policy.algorithm
    if not isinstance(algorithm, GrpoAlgorithm):
        raise RuntimeError(f"TrainPolicy runs GRPO; got {algorithm.name!r}")
    arm_dir = _learner_run(experiment, context.run_dir) / "arms" / unit.name
    train_prompts = context.run_dir / TRAIN_PROMPTS
    if not train_prompts.is_file():
        raise RuntimeError(f"{train_prompts} is missing: the Annotate unit writes it")
    _train(context, unit, arm_dir, algorithm.steps, learner_argv(context, unit.name))


def learner_argv(context: UnitContext, arm: str) -> list[str]:
    return [
        sys.executable, "-m", "judgelab.learner.main", str(context.experiment_path),
        "--phase=train-policy", "--arm", arm,
        "--host", "127.0.0.1", "--port", "0", "--metrics-port", "0",
        "--redis-url", context.redis_url,
        "--gold-address", context.address(ANNOTATOR),
        "--judge-pool-address", context.address(JUDGE_POOL),
        "--heldout-prompts", str(context.run_dir / "annotate" / "policy_eval.jsonl"),
        "--feed-prompts", str(context.run_dir / TRAIN_PROMPTS),
    ]  # fmt: skip


def _train(context: UnitContext, unit: Unit, arm_dir: Path, total: int, argv: list[str]) -> None:
    name = f"learner-{unit.name}"
    child = context.supervisor.start(name, argv)
    shown = -1

    def follow_progress() -> None:
        nonlocal shown
        done = read_progress(arm_dir)
        if done != shown:
            shown = done
            context.report(done, total, "steps")
            context.update_arm(arm_progress(context.experiment, unit.name, arm_dir))

    # Cancelling sends SIGTERM: the learner checkpoints after its current step.
    code = watch_child(context, child, follow_progress, name)
    if code != 0 or shown < total:
        raise child.failure(f"exited with code {code} at step {shown} of {total}")


def read_progress(arm_dir: Path) -> int:
    """Steps the learner has finished (its ``progress.json``; 0 before the first)."""
    try:
        return int(json.loads((arm_dir / "progress.json").read_text())["step"])
    except (OSError, ValueError, KeyError):
        return 0


def read_dropped(arm_dir: Path) -> list[str]:
    """The group ids the learner dropped as too stale, oldest first (its ``progress.json``)."""
    try:
        dropped = json.loads((arm_dir / "progress.json").read_text()).get("dropped", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [str(group_id) for group_id in dropped] if isinstance(dropped, list) else []


def arm_progress(experiment: Experiment, arm: str, arm_dir: Path) -> ArmProgress:
    """The arm's latest numbers from its ``steps.jsonl`` (what `judgelab status` shows)."""
    judge = next((a.judge for a in experiment.spec.arms if a.name == arm), "")
    path = arm_dir / "steps.jsonl"
    lines = path.read_text().splitlines() if path.is_file() else []
    records = [json.loads(line) for line in lines if line]
    if not records:
        return ArmProgress(arm, judge)
    last = records[-1]
    evals = [r["eval"] for r in records if isinstance(r.get("eval"), dict)]
    latest_eval = evals[-1] if evals else {}
    return ArmProgress(
        arm,
        judge,
        step=int(last["step"]),
        proxy_reward=_number(last.get("proxy_reward_mean")),
        gold_reward=_number(latest_eval.get("gold_reward_mean")),
        kl=_number(last.get("kl")),
        hacking=bool(latest_eval.get("hacking_detected")),
    )


def _learner_run(experiment: Experiment, run_dir: Path) -> Path:
    """Where the learner and the services keep the run: spec.runtime.run_dir / name."""
    spec_run = Path(experiment.spec.runtime.run_dir) / experiment.metadata.name
    if spec_run.resolve() != run_dir.resolve():
        raise RuntimeError(
            f"the services keep this run under {spec_run} (spec.runtime.run_dir / "
            f"metadata.name) but the run directory is {run_dir}: they must be the same"
        )
    return run_dir


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None
