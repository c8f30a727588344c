"""The TrainPolicy unit of one arm: prompts onto the stream, the learner as a child process.

The stage's services (gold annotator, judge pool, rollout generator) already run with the
runtime's Redis: the generator turns ``jl:{exp}:prompts`` into rollout groups, the judge pool
scores them, the learner trains on the scored groups, publishes versions and gold-evaluates
its policy (addresses of the annotator and the judge pool on its command line). Prompts are
pushed step by step, ``max_staleness + 1`` steps ahead of the learner's ``progress.json``, so no
rollout group is sampled by a policy older than the learner accepts. Ids are
``{arm}:step{k}:{prompt id}`` (unique per send, the same on a rerun) and the last pushed step is
kept in the unit directory: a rerun after a crash pushes only what was not pushed, and the
learner resumes from its checkpoint.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import redis

from judgelab.atomic_files import write_text_atomic
from judgelab.engines.base import ChatMessage, Role
from judgelab.phases import ArmProgress
from judgelab.phases.stages import ANNOTATOR, JUDGE_POOL
from judgelab.queues import Producer, StreamNames, connect
from judgelab.queues.messages import Prompt, PromptMessage
from judgelab.runtime.context import UnitContext
from judgelab.runtime.progress import Unit
from judgelab.runtime.unit_process import watch_child
from judgelab.spec import Experiment
from judgelab.spec.policy import GrpoAlgorithm

PUSHED_FILE = "pushed.json"


def run_train_policy(context: UnitContext, unit: Unit) -> None:
    """Train arm ``unit.name`` to ``policy.algorithm.steps``; raises if the learner fails."""
    experiment = context.experiment
    algorithm = experiment.spec.policy.algorithm
    if not isinstance(algorithm, GrpoAlgorithm):
        raise RuntimeError(f"TrainPolicy runs GRPO; got {algorithm.name!r}")
    arm_dir = _learner_run(experiment, context.run_dir) / "arms" / unit.name
    annotate = context.run_dir / "annotate"
    client = connect(context.redis_url)
    try:
        feeder = PromptFeeder(
            client,
            StreamNames(experiment.metadata.name),
            unit.name,
            load_prompts(annotate / "policy_train.jsonl"),
            algorithm,
            context.unit_dir(unit) / PUSHED_FILE,
        )
        feeder.feed(read_progress(arm_dir))
        _train(context, unit, arm_dir, feeder, learner_argv(context, unit.name))
    finally:
        client.close()


def learner_argv(context: UnitContext, arm: str) -> list[str]:
    return [
        sys.executable, "-m", "judgelab.learner.main", str(context.experiment_path),
        "--phase=train-policy", "--arm", arm,
        "--host", "127.0.0.1", "--port", "0", "--metrics-port", "0",
        "--redis-url", context.redis_url,
        "--gold-address", context.address(ANNOTATOR),
        "--judge-pool-address", context.address(JUDGE_POOL),
        "--heldout-prompts", str(context.run_dir / "annotate" / "policy_eval.jsonl"),
    ]  # fmt: skip


def _train(
    context: UnitContext, unit: Unit, arm_dir: Path, feeder: PromptFeeder, argv: list[str]
) -> None:
    name = f"learner-{unit.name}"
    child = context.supervisor.start(name, argv)
    total = feeder.total_steps
    shown = -1

    def follow_progress() -> None:
        nonlocal shown
        done = read_progress(arm_dir)
        if done != shown:
            shown = done
            feeder.feed(done)
            context.report(done, total, "steps")
            context.update_arm(arm_progress(context.experiment, unit.name, arm_dir))

    # Cancelling sends SIGTERM: the learner checkpoints after its current step.
    code = watch_child(context, child, follow_progress, name)
    if code != 0 or shown < total:
        raise child.failure(f"exited with code {code} at step {shown} of {total}")


class PromptFeeder:
    """Pushes each learner step's prompts once, a bounded number of steps ahead."""

    def __init__(
        self,
        client: redis.Redis,
        names: StreamNames,
        arm: str,
        prompts: Sequence[dict[str, Any]],
        algorithm: GrpoAlgorithm,
        marker: Path,
    ) -> None:
        if not prompts:
            raise RuntimeError("no policy-training prompts (annotate/policy_train.jsonl is empty)")
        self.producer = Producer(client)
        self.stream = names.prompts
        self.arm = arm
        self.prompts = list(prompts)
        self.per_step = algorithm.prompts_per_step
        self.total_steps = algorithm.steps
        self.ahead = algorithm.max_staleness + 1
        self.marker = marker

    @property
    def pushed(self) -> int:
        """The last step whose prompts are on the stream."""
        if not self.marker.is_file():
            return 0
        return int(json.loads(self.marker.read_text())["pushed_steps"])

    def feed(self, done: int) -> None:
        """Push every step up to ``done + ahead`` not pushed yet (``done``: steps trained)."""
        target = min(self.total_steps, done + self.ahead)
        for step in range(self.pushed + 1, target + 1):
            # One transaction per step: the generator reads the step's prompts as one batch.
            entries = [message.to_fields() for message in self.messages(step)]
            self.producer.add_all(self.stream, entries, wait_s=60.0)
            write_text_atomic(self.marker, json.dumps({"pushed_steps": step}) + "\n")

    def messages(self, step: int) -> list[PromptMessage]:
        """Step ``step``'s prompts: the next ``per_step`` of the training prompts, cycling."""
        start = (step - 1) * self.per_step
        rows = [self.prompts[(start + j) % len(self.prompts)] for j in range(self.per_step)]
        return [
            PromptMessage(
                id=f"{self.arm}:step{step}:{row['id']}",
                prompt=_prompt(row["prompt"]),
                reference=row.get("reference"),
                arm=self.arm,
                rubric=row.get("rubric"),
            )
            for row in rows
        ]


def load_prompts(path: Path) -> list[dict[str, Any]]:
    """Annotate's ``policy_train.jsonl`` rows ({id, prompt, reference, rubric?, ...})."""
    if not path.is_file():
        raise RuntimeError(f"{path} is missing: the Annotate unit writes it")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def read_progress(arm_dir: Path) -> int:
    """Steps the learner has finished (its ``progress.json``; 0 before the first)."""
    try:
        return int(json.loads((arm_dir / "progress.json").read_text())["step"])
    except (OSError, ValueError, KeyError):
        return 0


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


def _prompt(raw: Any) -> Prompt:
    if isinstance(raw, str):
        return raw
    return [ChatMessage(cast(Role, turn["role"]), turn["content"]) for turn in raw]


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None
