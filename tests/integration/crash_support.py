"""The online RL pipeline as real processes on the tiny model, for the crash and Redis tests.

Run as a script, this file is a service: ``crash_support.py generator|judge EXPERIMENT URL``
serves the rollout generator or the judge pool with a short reclaim timeout (the CLI's are 10
and 1 minutes: a test cannot wait that long for a killed process's work to be taken over). The
learner is the real ``python -m judgelab.learner.main``. :class:`Pipeline` starts, kills and
restarts them, feeds prompts step by step (the runtime's ``PromptFeeder``) and reads back, by
id, what every consumer group acknowledged.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import yaml

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart.yaml"
ARM = "plain"
CLAIM_MS = 1500
GENERATOR_GROUP = f"rollout-generator-{ARM}"
JUDGE_GROUP = "judge-pool"
LEARNER_GROUP = "learner"
PROMPTS = [f"Question number {k}: what is {k} plus {k}?" for k in range(12)]


def save_tiny_model(directory: Path) -> Path:
    from judgelab.engines.tiny import tiny_model, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    tiny_model(len(tokenizer), seed=0).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def write_experiment(
    path: Path, name: str, model_dir: Path, run_dir: Path, *, steps: int, per_step: int = 2
) -> Path:
    """The quickstart with the tiny model as policy and judge, ``steps`` GRPO steps, G = 2."""
    raw = yaml.safe_load(QUICKSTART.read_text())
    raw["metadata"]["name"] = name
    spec = raw["spec"]
    judge = spec["judges"][0]
    judge["model"] = {"name": str(model_dir)}
    spec["judges"] = [judge]
    spec["policy"]["model"] = {"name": str(model_dir)}
    spec["policy"]["lora"] = {"r": 4, "alpha": 8, "dropout": 0.0}
    spec["policy"]["generation"]["max_new_tokens"] = 6
    spec["policy"]["algorithm"].update(
        {
            "group_size": 2,
            "steps": steps,
            "prompts_per_step": per_step,
            "learning_rate": 1e-2,
            "max_staleness": 1,
        }
    )
    spec["evaluation"] = {"every_n_steps": steps, "heldout_prompts": 2}
    spec["runtime"].update({"run_dir": str(run_dir), "log_level": "info"})
    path.write_text(yaml.safe_dump(raw))
    return path


@dataclass
class Service:
    """One service process; every life's output goes to ``log_dir/{name}.{life}.log``."""

    name: str
    argv: list[str]
    log_dir: Path
    life: int = 0
    process: subprocess.Popen[bytes] | None = None
    exit_codes: list[int] = field(default_factory=list)

    def start(self) -> None:
        self.life += 1
        log = (self.log_dir / f"{self.name}.{self.life}.log").open("wb")
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed or acknowledged."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.exit_codes.append(self.process.wait())

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def consuming(self) -> bool:
        """This life reads its stream (past start-up, where Redis being down is fatal)."""
        log = self.log_dir / f"{self.name}.{self.life}.log"
        text = log.read_text(errors="replace") if log.is_file() else ""
        return "consuming jl:" in text or "left pending by a previous life" in text

    def saw_outage(self) -> bool:
        """This life has logged that Redis is unreachable."""
        log = self.log_dir / f"{self.name}.{self.life}.log"
        return log.is_file() and "unreachable during" in log.read_text(errors="replace")

    def logs(self) -> str:
        return "".join(
            f"--- {p.name} ---\n{p.read_text(errors='replace')[-3000:]}\n"
            for p in sorted(self.log_dir.glob(f"{self.name}.*.log"))
        )


class Pipeline:
    """Generator, judge pool and learner of one experiment, fed step by step."""

    def __init__(self, experiment_path: Path, redis_url: str, log_dir: Path) -> None:
        from judgelab.queues import StreamNames
        from judgelab.spec.loader import load_experiment

        self.experiment = load_experiment(experiment_path)
        self.names = StreamNames(self.experiment.metadata.name)
        self.run_dir = Path(self.experiment.spec.runtime.run_dir) / self.experiment.metadata.name
        self.arm_dir = self.run_dir / "arms" / ARM
        self.redis_url = redis_url
        log_dir.mkdir(parents=True, exist_ok=True)
        here, exp = str(Path(__file__).resolve()), str(experiment_path)
        python = sys.executable
        self.services = {
            "generator": Service("generator", [python, here, "generator", exp, redis_url], log_dir),
            "judge": Service("judge", [python, here, "judge", exp, redis_url], log_dir),
            "learner": Service(
                "learner",
                [python, "-m", "judgelab.learner.main", exp, "--arm", ARM, "--redis-url",
                 redis_url, "--host", "127.0.0.1", "--port", "0", "--metrics-port", "-1"],
                log_dir,
            ),
        }  # fmt: skip

    def start(self) -> None:
        for service in self.services.values():
            service.start()

    def stop(self) -> None:
        for service in self.services.values():
            service.stop()

    def progress(self) -> int:
        from judgelab.runtime.train_policy import read_progress

        return read_progress(self.arm_dir)

    def feeder(self, client: redis.Redis) -> Any:
        from judgelab.learner.feeder import PromptFeeder

        prompts = [{"id": f"p{k}", "prompt": text} for k, text in enumerate(PROMPTS)]
        algorithm = self.experiment.spec.policy.algorithm
        return PromptFeeder(
            client, self.names, ARM, prompts, algorithm, self.run_dir / "pushed.json"
        )

    def run(
        self,
        client: redis.Redis,
        on_tick: Callable[[int], None] = lambda step: None,
        timeout_s: float = 240.0,
    ) -> None:
        """Feed prompts until the learner exits; ``on_tick(progress)`` may kill and restart."""
        from judgelab.runtime.train_policy import read_dropped

        feeder = self.feeder(client)
        learner = self.services["learner"]
        until = time.monotonic() + timeout_s
        while learner.exited() is None:
            if time.monotonic() > until:
                raise AssertionError(f"the run did not finish in {timeout_s} s\n{self.all_logs()}")
            done, dropped = self.progress(), read_dropped(self.arm_dir)
            _retrying(lambda: feeder.feed(done, dropped))  # noqa: B023 - called at once
            on_tick(done)
            time.sleep(0.02)
        if learner.exited() != 0:
            raise AssertionError(f"learner exited {learner.exited()}\n{self.all_logs()}")

    def all_logs(self) -> str:
        return "".join(s.logs() for s in self.services.values())

    def steps(self) -> list[dict[str, Any]]:
        lines = (self.arm_dir / "steps.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines if line]

    def acknowledged(self, client: redis.Redis) -> Acknowledged:
        """What each consumer group recorded as done, and what is on each stream, by id."""
        names = self.names
        prompts = [_data(f)["id"] for _, f in client.xrange(names.prompts)]
        rollouts = [_data(f) for _, f in client.xrange(names.rollouts(ARM))]
        scored = [_data(f) for _, f in client.xrange(names.scored(ARM))]
        return Acknowledged(
            prompts=prompts,
            rollout_groups={g["group_id"]: [r["id"] for r in g["rollouts"]] for g in rollouts},
            rollout_group_order=[g["group_id"] for g in rollouts],
            scored_groups={g["group_id"]: list(g["rollout_ids"]) for g in scored},
            scored_group_order=[g["group_id"] for g in scored],
            generator_done=_members(client, names.processed_set(names.prompts, GENERATOR_GROUP)),
            judge_done=_members(client, names.processed_set(names.rollouts(ARM), JUDGE_GROUP)),
            learner_done=_members(client, names.processed_set(names.scored(ARM), LEARNER_GROUP)),
            dead=sum(
                int(client.xlen(names.dead_letter(s)))
                for s in (names.prompts, names.rollouts(ARM), names.scored(ARM))
            ),
            pending={
                (s, g): int(client.xpending(s, g)["pending"])
                for s, g in (
                    (names.prompts, GENERATOR_GROUP),
                    (names.rollouts(ARM), JUDGE_GROUP),
                    (names.rollouts(ARM), LEARNER_GROUP),
                    (names.scored(ARM), LEARNER_GROUP),
                )
            },
        )


@dataclass(frozen=True)
class Acknowledged:
    prompts: list[str]
    rollout_groups: dict[str, list[str]]
    rollout_group_order: list[str]
    scored_groups: dict[str, list[str]]
    scored_group_order: list[str]
    generator_done: set[str]
    judge_done: set[str]
    learner_done: set[str]
    dead: int
    pending: dict[tuple[str, str], int]


def check_nothing_lost_nothing_twice(
    acked: Acknowledged,
    steps: list[dict[str, Any]],
    total_steps: int,
    dropped: list[str] | None = None,
) -> list[str]:
    """The reliability assertions by id; returns the trained rollout ids (each exactly once).

    ``dropped``: the groups the learner recorded as too stale (its ``progress.json``). A crash
    can reorder groups (a killed judge's are reclaimed after the next step's), so the learner
    may drop some by design; each must be acked, never trained, and replaced by the feeder's
    ``:retry1`` prompt, which was trained (or dropped and replaced in turn)."""
    drops = set(dropped or ())
    assert [s["step"] for s in steps] == list(range(1, total_steps + 1)), steps
    trained_groups = [g for s in steps for g in s["group_ids"]]
    assert len(trained_groups) == len(set(trained_groups)), f"a group trained twice: {steps}"
    # Every acknowledged prompt has exactly one rollout group, and nothing else is there.
    assert sorted(acked.rollout_group_order) == sorted(set(acked.rollout_group_order))
    assert acked.generator_done == set(acked.prompts) == set(acked.rollout_groups)
    # Every rollout group the judge pool acknowledged was scored once, with the same rollouts.
    assert sorted(acked.scored_group_order) == sorted(set(acked.scored_group_order))
    assert acked.judge_done == set(acked.scored_groups) == set(acked.rollout_groups)
    for group_id, rollout_ids in acked.scored_groups.items():
        assert rollout_ids == acked.rollout_groups[group_id], group_id
    # Every scored group the learner acknowledged was trained on or recorded as dropped: none
    # lost. Every drop was replaced once, and nothing trained was dropped.
    assert not drops & set(trained_groups), (drops, trained_groups)
    assert acked.learner_done == set(trained_groups) | drops == set(acked.prompts)
    assert {f"{_original(g)}:retry{_retries(g) + 1}" for g in drops} <= set(acked.prompts)
    assert acked.dead == 0 and not any(acked.pending.values()), acked.pending
    trained_rollouts = [r for g in trained_groups for r in acked.scored_groups[g]]
    assert len(trained_rollouts) == len(set(trained_rollouts))
    return trained_rollouts


def _original(group_id: str) -> str:
    return group_id.split(":retry")[0]


def _retries(group_id: str) -> int:
    _, _, retries = group_id.partition(":retry")
    return int(retries or 0)


def copy_streams(client: redis.Redis, source: Any, target: Any) -> None:
    """The arm's rollouts and scored streams, entries in their order, under another experiment."""
    from judgelab.queues.groups import ensure_group

    for stream in ("rollouts", "scored"):
        for _, fields in client.xrange(getattr(source, stream)(ARM)):
            client.xadd(getattr(target, stream)(ARM), fields)
    ensure_group(client, target.scored(ARM), LEARNER_GROUP)


def _data(fields: dict[bytes, bytes]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(fields[b"data"])
    return data


def _members(client: redis.Redis, key: str) -> set[str]:
    return {m.decode() for m in client.smembers(key)}


def _retrying(call: Callable[[], None], timeout_s: float = 30.0) -> None:
    """``call`` retried while Redis is down (the test's own feeder, during a Redis restart)."""
    until = time.monotonic() + timeout_s
    while True:
        try:
            call()
            return
        except (redis.ConnectionError, redis.TimeoutError):
            if time.monotonic() > until:
                raise
            time.sleep(0.2)


# -- the services, when this file runs as a script ----------------------------------------------
def _serve_generator(experiment: Any, url: str) -> None:
    from judgelab.rollout.main import ServeOptions, serve_rollout_generator

    options = ServeOptions(
        metrics_port=None, redis_url=url, batch_prompts=2, claim_idle_ms=CLAIM_MS
    )
    serve_rollout_generator(experiment, options)


def _serve_judge(experiment: Any, url: str) -> None:
    """``serve_judge_pool``'s stream workers, with the short reclaim timeout."""
    from judgelab.judge_pool.server import build_judge_pool
    from judgelab.judge_pool.worker import RolloutScorer
    from judgelab.queues import Consumer, StreamNames, connect
    from judgelab.serving.lifecycle import (
        WorkerThreads,
        announce,
        consumer_name,
        run_until_signalled,
    )
    from judgelab.serving.stream_worker import StreamWorker

    pool = build_judge_pool(experiment)
    names = StreamNames(experiment.metadata.name)
    client = connect(url)
    threads = WorkerThreads()
    consumer = Consumer(
        client, names.rollouts(ARM), JUDGE_GROUP, consumer_name(), claim_idle_ms=CLAIM_MS
    )
    threads.start(StreamWorker(consumer, RolloutScorer(pool, names, {ARM}), block_ms=200))
    announce({"service": "judge-pool", "streams": threads.streams})
    run_until_signalled([threads.stop, pool.close])


if __name__ == "__main__":
    import logging

    from judgelab.spec.loader import load_experiment

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    role, experiment_file, redis_url = sys.argv[1:4]
    loaded = load_experiment(experiment_file)
    {"generator": _serve_generator, "judge": _serve_judge}[role](loaded, redis_url)
