"""The learner loop of one arm: joined groups in, optimiser steps, versions and checkpoints out.

Order per step: train → append to ``steps.jsonl`` → publish version N → checkpoint (every
``checkpoint_every`` steps) → ack the groups the checkpoint covers. A crash before the ack
redelivers those groups; the resumed learner (same checkpoint, same data order, same RNG)
retrains them into the same weights, or skips the ones the checkpoint already holds. Under
torchrun only rank 0 reads Redis, writes files and acks; it broadcasts orders that the other ranks
follow: train on this batch, stop, and under FSDP (where gathering weights and every forward are
collectives) take part in a checkpoint, a publication or the gold evaluation's generation.

A group too stale to train on (or from a lost future) is dropped and recorded in
``progress.json`` before its ack, so the prompt feeder sends a replacement (see ``progress``); a
dropped group redelivered after a crash is acked again, never trained.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from judgelab.learner import checkpoint
from judgelab.learner.batch import TrainGroup
from judgelab.learner.control import LearnerControl, LearnerPhaseName, now
from judgelab.learner.distributed import broadcast
from judgelab.learner.evaluation import Answering, Evaluator, HackingTracker
from judgelab.learner.job_annotation import JobAnnotator
from judgelab.learner.metrics import LearnerMetrics
from judgelab.learner.progress import ProgressFile
from judgelab.learner.publish import PolicyPublisher
from judgelab.learner.source import Pending, StreamGroupSource
from judgelab.learner.steplog import StepLog, StepTimes
from judgelab.learner.trainer import GrpoTrainer
from judgelab.learner.watchdog import LostGroup, LostGroups

log = logging.getLogger(__name__)


class PromptSupply(Protocol):
    def feed(self, done: int, dropped: Sequence[str] = ()) -> None: ...


class GroupSource(Protocol):
    def read(self, count: int, block_ms: int) -> list[Pending]: ...
    def already_done(self, group_id: str) -> bool: ...
    def ack(self, pending: Pending) -> None: ...


@dataclass(frozen=True)
class LoopConfig:
    arm: str
    total_steps: int
    prompts_per_step: int
    checkpoint_every: int = 1
    keep_checkpoints: int = 3
    eval_every: int | None = None
    hacking_margin: float = 0.1
    block_ms: int = 1000


# Rank 0's orders to the other ranks (see LearnerLoop._follow).
STEP, STOP = "step", "stop"
CHECKPOINT, PUBLISH, EVALUATE = "checkpoint", "publish", "evaluate"  # FSDP only


@dataclass(frozen=True)
class Order:
    kind: str
    groups: list[TrainGroup] = field(default_factory=list)  # STEP
    halt: bool = False  # STOP: stopped by request, not done (no further arm)


class LearnerLoop:
    """Runs one arm to ``total_steps`` (``source``/``publisher`` are None on ranks > 0; under
    FSDP ranks > 0 get the ``evaluator`` too, for its generation)."""

    def __init__(
        self,
        trainer: GrpoTrainer,
        source: GroupSource | None,
        publisher: PolicyPublisher | None,
        arm_dir: Path,
        config: LoopConfig,
        *,
        evaluator: Evaluator | None = None,
        metrics: LearnerMetrics | None = None,
        control: LearnerControl | None = None,
        annotator: JobAnnotator | None = None,
        feeder: PromptSupply | None = None,
    ) -> None:
        self.trainer = trainer
        self.source = source
        self.publisher = publisher
        self.arm_dir = arm_dir
        self.config = config
        self.evaluator = evaluator
        self.metrics = metrics
        self.control = control or LearnerControl(config.total_steps)
        self.trained: set[str] = set()
        self.unacked: list[Pending] = []
        self.tracker = HackingTracker(config.hacking_margin)
        self.annotator = annotator
        self.last_gold: float | None = None
        self.dropped_total = 0  # in this process (the Prometheus counter)
        self.lost: dict[str, LostGroup] = {}
        self.is_main = trainer.info.is_main
        self.progress = ProgressFile(arm_dir, config.arm, config.total_steps)
        self.feeder = feeder

    @property
    def steps_file(self) -> Path:
        return self.arm_dir / "steps.jsonl"

    def resume(self) -> Path | None:
        """Restore the latest checkpoint of this arm, if any; drop log lines past it."""
        path = checkpoint.latest(self.arm_dir)
        if path is None:
            if self.is_main:
                self._truncate_log(0)  # steps logged by a run that never checkpointed
            return None
        extra = self.trainer.resume(path)
        self.trained = set(extra.get("trained_group_ids", []))
        self.tracker.load(extra.get("hacking", {}))
        if self.is_main:
            self._truncate_log(self.trainer.version)
            self.control.update(
                step=self.trainer.version,
                policy_version=self.trainer.version,
                last_checkpoint=str(path),
            )
        log.info("resumed %s from %s (step %d)", self.config.arm, path, self.trainer.version)
        return path

    def run(self) -> None:
        """Train until ``total_steps`` or a stop request; then answer pending requests."""
        try:
            if self.is_main:
                self._lead()
            else:
                self._follow()
            self.control.mark_stopped()
        except BaseException:
            self.control.mark_stopped(LearnerPhaseName.FAILED)
            raise

    def _lead(self) -> None:
        if self.trainer.version == 0:
            self._evaluate_start()
        while self.trainer.version < self.config.total_steps:
            started = time.perf_counter()
            batch = self._collect()
            if batch is None:
                break
            self._order(Order(STEP, [p.group for p in batch]))
            self._step(batch, time.perf_counter() - started)
        if self.control.checkpoint_on_stop and self.unacked:
            self._checkpoint("stop")
        self._order(Order(STOP, halt=self.control.stop_requested))

    def _follow(self) -> None:
        """Ranks > 0: do what rank 0 orders until it says stop."""
        while True:
            order: Order = broadcast(None, self.trainer.info)
            if order.kind == STOP:
                break
            self._obey(order)
        if order.halt:  # rank 0 was asked to stop: no further arm here either
            self.control.ask_stop("rank 0 stopped")

    def _obey(self, order: Order) -> None:
        if order.kind == STEP:
            self.trainer.step(order.groups)
            self.trained.update(g.group_id for g in order.groups)
        elif order.kind == CHECKPOINT:
            self.trainer.save_checkpoint(self.arm_dir)  # gathers; rank 0 writes
        elif order.kind == PUBLISH:
            with self.trainer.saveable():  # gathers; rank 0 publishes
                pass
        elif order.kind == EVALUATE:
            self._generate_along()
        else:
            raise ValueError(f"unknown order {order.kind!r} from rank 0")

    def _order(self, order: Order) -> None:
        """Send ``order`` to the other ranks (nothing to send in one process)."""
        broadcast(order, self.trainer.info)

    def _with_followers(self, kind: str) -> None:
        """Under FSDP, have the other ranks join the collective rank 0 starts next."""
        if self.trainer.sharded:
            self._order(Order(kind))

    def _generate_along(self) -> None:
        if not isinstance(self.evaluator, Answering):
            raise RuntimeError("under FSDP every rank needs the gold evaluator (its generation)")
        with self.trainer.evaluating():
            self.evaluator.answers(self.trainer)

    # -- steps -------------------------------------------------------------------------------
    def _collect(self) -> list[Pending] | None:
        assert self.source is not None
        batch: list[Pending] = []
        self.control.update(phase=LearnerPhaseName.WAITING)
        while len(batch) < self.config.prompts_per_step:
            self._serve_checkpoint_requests()
            if self.control.stop_requested:
                return None
            if self.feeder is not None:  # the next steps' prompts, and replacements of drops
                self.feeder.feed(self.trainer.version, self.progress.dropped)
            wanted = self.config.prompts_per_step - len(batch)
            read = self.source.read(wanted, self.config.block_ms)
            for pending in read:
                if self._usable(pending, batch):
                    batch.append(pending)
            if not read:  # the scored stream is drained: is anything never coming?
                self._check_lost(batch)
        return batch

    def _check_lost(self, batch: list[Pending]) -> None:
        """Fail the arm, naming them, when groups it waits for were dead-lettered (watchdog)."""
        if not isinstance(self.source, StreamGroupSource):
            return
        held = {p.group_id for p in batch}
        for group in self.source.lost_groups():
            if group.group_id not in self.trained and group.group_id not in held:
                self.lost.setdefault(group.group_id, group)
        if not self.lost:
            return
        error = LostGroups(self.config.arm, self.trainer.version, list(self.lost.values()))
        log.error("%s", error)
        if self.metrics is not None:
            self.metrics.record_lost(self.config.arm, len(self.lost))
        metrics = {**self.control.state().metrics, "lost_groups": float(len(self.lost))}
        self.control.update(metrics=metrics)
        raise error

    def _usable(self, pending: Pending, batch: list[Pending]) -> bool:
        assert self.source is not None
        group_id = pending.group_id
        done = group_id in self.trained or self.progress.was_dropped(group_id)
        if done or self.source.already_done(group_id):
            self.source.ack(pending)  # redelivered after it was trained or dropped: no outputs
            return False
        if any(p.group_id == group_id for p in batch):
            return False
        lag = self.trainer.version - pending.group.policy_version
        if lag < 0 or lag > self.trainer.settings.max_staleness:
            log.info("dropping group %s: %d versions stale", group_id, lag)
            self.progress.record_drop(group_id, self.trainer.version)  # before the ack
            self.dropped_total += 1
            if self.metrics is not None:
                self.metrics.dropped(self.config.arm)
            self.source.ack(pending)
            return False
        return True

    def _step(self, batch: list[Pending], wait_s: float) -> None:
        self.control.update(phase=LearnerPhaseName.TRAINING)
        times = StepTimes(
            generate=_slowest(p.generate_seconds for p in batch),
            judge=_slowest(p.judge_seconds for p in batch),
            wait=wait_s,
        )
        step_log = self.trainer.step([p.group for p in batch], times)
        self.trained.update(p.group_id for p in batch)
        self.unacked.extend(batch)
        step_log = self._evaluate(step_log)
        self._append_log(step_log)
        if self.publisher is not None:
            self._with_followers(PUBLISH)
            with self.trainer.saveable() as policy:
                self.publisher.publish(self.trainer.version, policy)
        due = self.trainer.version % self.config.checkpoint_every == 0
        if due or self.trainer.version >= self.config.total_steps:
            self._checkpoint()
        self._report(step_log)

    def _evaluate(self, step_log: StepLog) -> StepLog:
        every = self.config.eval_every
        if self.evaluator is None or not every or step_log.step % every:
            return step_log
        return step_log.with_evaluation(self._evaluation(step_log.step))

    def _evaluate_start(self) -> None:
        """Step 0 (the starting policy, KL 0): the origin of the gold curves and the Gao fit."""
        if self.evaluator is None or not self.config.eval_every:
            return
        recorded = self._recorded_start()
        if recorded is not None:  # a rerun before the first checkpoint: only the tracker
            self._track(0, recorded)
            return
        result = self._evaluation(0)
        line = {"step": 0, "policy_version": 0, "proxy_reward_mean": None, "kl": 0.0}
        self._append_json({**line, "eval": result})

    def _evaluation(self, step: int) -> dict[str, Any]:
        assert self.evaluator is not None
        self._with_followers(EVALUATE)
        with self.trainer.evaluating():
            result = dict(self.evaluator(step, self.trainer))
        self._track(step, result)
        if self.metrics is not None:
            self.metrics.record_evaluation(self.config.arm, result)
        return result

    def _track(self, step: int, result: dict[str, Any]) -> None:
        proxy, gold = result.get("proxy_reward"), result.get("gold_reward")
        if isinstance(proxy, int | float) and isinstance(gold, int | float):
            result.update(self.tracker.update(step, float(proxy), float(gold)))
        gold_mean = result.get("gold_reward_mean")
        if isinstance(gold_mean, int | float):
            self.last_gold = float(gold_mean)

    def _recorded_start(self) -> dict[str, Any] | None:
        if not self.steps_file.is_file():
            return None
        for line in self.steps_file.read_text().splitlines():
            data = json.loads(line) if line else {}
            if data.get("step") == 0 and isinstance(data.get("eval"), dict):
                return dict(data["eval"])
        return None

    # -- durability --------------------------------------------------------------------------
    def _checkpoint(self, tag: str = "") -> Path:
        self.control.update(phase=LearnerPhaseName.CHECKPOINTING)
        extra = {
            "arm": self.config.arm,
            "tag": tag,
            "trained_group_ids": sorted(self.trained),
            "scored_last_id": self.unacked[-1].scored.id if self.unacked else None,
            "hacking": self.tracker.state(),
        }
        self._with_followers(CHECKPOINT)
        path = self.trainer.save_checkpoint(self.arm_dir, extra)
        best = self.tracker.best_gold_step
        keep = frozenset({checkpoint.checkpoint_root(self.arm_dir) / f"step-{best}"})
        checkpoint.prune(self.arm_dir, self.config.keep_checkpoints, keep)
        assert self.source is not None
        for pending in self.unacked:
            self.source.ack(pending)
        self.unacked = []
        self.control.update(last_checkpoint=str(path))
        return path

    def _serve_checkpoint_requests(self) -> None:
        for request in self.control.take_checkpoint_requests():
            try:
                path = self._checkpoint(request.tag)
                self.control.answer(request, str(path), self.trainer.version)
            except Exception as exc:  # the caller gets the error; training goes on
                self.control.answer(request, "", self.trainer.version, str(exc))

    def _append_log(self, step_log: StepLog) -> None:
        self._append_json(step_log.to_json())

    def _append_json(self, line: dict[str, Any]) -> None:
        self.arm_dir.mkdir(parents=True, exist_ok=True)
        with self.steps_file.open("a") as handle:
            handle.write(json.dumps(line, sort_keys=True) + "\n")

    def _truncate_log(self, step: int) -> None:
        if not self.steps_file.is_file():
            return
        lines = self.steps_file.read_text().splitlines()
        kept = [line for line in lines if line and json.loads(line)["step"] <= step]
        self.steps_file.write_text("".join(f"{line}\n" for line in kept))

    def _report(self, step_log: StepLog) -> None:
        self._serve_checkpoint_requests()
        self.progress.record_step(step_log.step, self.trainer.version)
        if self.metrics is not None:
            self.metrics.record_step(self.config.arm, step_log)
        if self.annotator is not None:
            hacking = self.tracker.detected_at is not None
            self.annotator.publish(
                step_log.step, step_log.reward_mean, self.last_gold, step_log.kl, hacking
            )
        self.control.update(
            step=step_log.step,
            policy_version=self.trainer.version,
            last_step_at=now(),
            losses={"total": step_log.loss},
            metrics=_numbers(step_log.to_json()),
        )


def _slowest(seconds: Iterable[float | None]) -> float | None:
    """The step's groups were sampled (judged) in batches side by side: the longest one."""
    known = [s for s in seconds if s is not None]
    return max(known) if known else None


def _numbers(data: dict[str, Any]) -> dict[str, float]:
    """The step log's numbers for ``Status`` (``times`` flattened to ``times.generate`` etc.)."""
    flat = {**data, **{f"times.{k}": v for k, v in data.get("times", {}).items()}}
    return {k: float(v) for k, v in flat.items() if isinstance(v, int | float) and k != "step"}


EvaluatorFactory = Callable[[GrpoTrainer], Evaluator]
