"""The TrainPolicy unit of one arm: prompts onto the stream, the learner as a child process.

The stage's services (gold annotator, judge pool, rollout generator) already run with the
runtime's Redis: the generator turns ``jl:{exp}:prompts`` into rollout groups, the judge pool
scores them, the learner trains on the scored groups, publishes versions and gold-evaluates
its policy (addresses of the annotator and the judge pool on its command line). Prompts are
pushed step by step, ``max_staleness + 1`` steps ahead of the learner's ``progress.json``, so no
rollout group is sampled by a policy older than the learner accepts. Ids are
``{arm}:step{k}:{prompt id}`` (unique per send, the same on a rerun) and the last pushed step is
kept in the unit directory: a rerun after a crash pushes only what was not pushed, and the
learner resumes from its checkpoint. A group the learner dropped as too stale (listed in
``progress.json``) is replaced by the same prompt under ``{dropped id}:retry{n}``, once: the
replaced ids are kept in the same marker. (A crash between a push and its marker write pushes
the same ids again; the generator answers an id once.)
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import redis

from judgelab.atomic_files import write_text_atomic
from judgelab.engines.base import ChatMessage, Role
from judgelab.phases import ArmProgress
from judgelab.phases.stages import ANNOTATOR, JUDGE_POOL
from judgelab.queues import Producer, StreamNames
from judgelab.queues.messages import Prompt, PromptMessage
from judgelab.queues.startup import wait_for_redis
from judgelab.runtime.context import UnitContext
from judgelab.runtime.progress import Unit
from judgelab.runtime.unit_process import watch_child
from judgelab.spec import Experiment
from judgelab.spec.policy import GrpoAlgorithm

PUSHED_FILE = "pushed.json"
_RETRY = re.compile(r"^(?P<original>.+):retry(?P<n>[0-9]+)$")


def run_train_policy(context: UnitContext, unit: Unit) -> None:
    """Train arm ``unit.name`` to ``policy.algorithm.steps``; raises if the learner fails."""
    experiment = context.experiment
    algorithm = experiment.spec.policy.algorithm
    if not isinstance(algorithm, GrpoAlgorithm):
        raise RuntimeError(f"TrainPolicy runs GRPO; got {algorithm.name!r}")
    arm_dir = _learner_run(experiment, context.run_dir) / "arms" / unit.name
    annotate = context.run_dir / "annotate"
    client = wait_for_redis(context.redis_url, experiment.spec.runtime.queues.redis_wait_s)
    try:
        feeder = PromptFeeder(
            client,
            StreamNames(experiment.metadata.name),
            unit.name,
            load_prompts(annotate / "policy_train.jsonl"),
            algorithm,
            context.unit_dir(unit) / PUSHED_FILE,
        )
        feeder.feed(read_progress(arm_dir), read_dropped(arm_dir))
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
        feeder.feed(done, read_dropped(arm_dir))  # a drop is replaced before the next step
        if done != shown:
            shown = done
            context.report(done, total, "steps")
            context.update_arm(arm_progress(context.experiment, unit.name, arm_dir))

    # Cancelling sends SIGTERM: the learner checkpoints after its current step.
    code = watch_child(context, child, follow_progress, name)
    if code != 0 or shown < total:
        raise child.failure(f"exited with code {code} at step {shown} of {total}")


class PromptFeeder:
    """Pushes each learner step's prompts once, a bounded number of steps ahead, and one
    replacement per group the learner dropped."""

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
        return int(self._marker().get("pushed_steps", 0))

    @property
    def replaced(self) -> list[str]:
        """The dropped group ids whose replacement is on the stream."""
        return [str(group_id) for group_id in self._marker().get("replaced", [])]

    def feed(self, done: int, dropped: Sequence[str] = ()) -> None:
        """Replace the ``dropped`` groups not replaced yet, then push every step up to
        ``done + ahead`` not pushed yet (``done``: steps trained)."""
        self.replace(dropped)
        target = min(self.total_steps, done + self.ahead)
        for step in range(self.pushed + 1, target + 1):
            # One transaction per step: the generator reads the step's prompts as one batch.
            entries = [message.to_fields() for message in self.messages(step)]
            self.producer.add_all(self.stream, entries, wait_s=60.0)
            self._write_marker(pushed_steps=step)

    def replace(self, dropped: Sequence[str]) -> None:
        """Push one replacement prompt per dropped group id not replaced yet (one transaction)."""
        replaced = self.replaced
        done = set(replaced)
        todo = [group_id for group_id in dict.fromkeys(dropped) if group_id not in done]
        if not todo:
            return
        entries = [self.replacement(group_id).to_fields() for group_id in todo]
        self.producer.add_all(self.stream, entries, wait_s=60.0)
        self._write_marker(replaced=[*replaced, *todo])

    def replacement(self, group_id: str) -> PromptMessage:
        """The prompt of dropped group ``group_id`` under the next ``:retry{n}`` id."""
        original, retry = group_id, 0
        message = self._pushed_message(group_id)
        match = _RETRY.match(group_id)
        if message is None and match is not None:
            original, retry = match["original"], int(match["n"])
            message = self._pushed_message(original)
        if message is None:
            raise RuntimeError(
                f"the learner dropped group {group_id!r}, which is no prompt this feeder pushed"
            )
        return dataclasses.replace(message, id=f"{original}:retry{retry + 1}")

    def _pushed_message(self, prompt_id: str) -> PromptMessage | None:
        prefix = f"{self.arm}:step"
        step_text = prompt_id.removeprefix(prefix).partition(":")[0]
        if not prompt_id.startswith(prefix) or not step_text.isdigit():
            return None
        return next((m for m in self.messages(int(step_text)) if m.id == prompt_id), None)

    def _marker(self) -> dict[str, Any]:
        if not self.marker.is_file():
            return {}
        data: dict[str, Any] = json.loads(self.marker.read_text())
        return data

    def _write_marker(self, **changes: Any) -> None:
        data = {"pushed_steps": self.pushed, "replaced": self.replaced} | changes
        write_text_atomic(self.marker, json.dumps(data) + "\n")

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


def _prompt(raw: Any) -> Prompt:
    if isinstance(raw, str):
        return raw
    return [ChatMessage(cast(Role, turn["role"]), turn["content"]) for turn in raw]


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None
