"""Whole runs through the local runtime with real Redis and real service processes.

- Offline services (models behind a URL never called; start in seconds): the run is stopped
  with SIGINT during TrainPolicy, `judgelab status` shows where it stopped, and the resumed run
  finishes without redoing finished units; a service killed mid-unit is reported with its log,
  restarted, and the unit retried.
- The built-in model on examples/quickstart.yaml: runners call the real gold annotator, judge
  pool and rollout generator over gRPC.

Run as a script, this file is the runtime of the first test:
`python test_runtime_run.py EXPERIMENT RUN_DIR`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from test_runtime_supervisor import offline_experiment
from typer.testing import CliRunner

from judgelab.api.v1 import (
    common_pb2,
    gold_annotator_pb2,
    gold_annotator_pb2_grpc,
    judge_pool_pb2,
    judge_pool_pb2_grpc,
    rollout_pb2,
    rollout_pb2_grpc,
)
from judgelab.cli import app
from judgelab.phases import ArmProgress, RetryPolicy, Stage
from judgelab.phases.stages import ANNOTATOR, JUDGE_POOL, ROLLOUT
from judgelab.runtime import RunStore, Unit, UnitContext, run_cli, run_experiment
from judgelab.runtime.progress import PlainProgress
from judgelab.runtime.services import service_argv

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart.yaml"
STOP_MARK = "stop-during-train-policy"


def _leftovers(run_dir: Path) -> list[int]:
    """Processes whose command line names the run directory (the services read its files)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(run_dir).encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def _runtime(experiment: Path | None, run_dir: Path) -> subprocess.Popen[str]:
    args = [str(experiment) if experiment else "--resume", str(run_dir)]
    return subprocess.Popen(
        [sys.executable, __file__, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "REDIS_URL"},
    )


def test_interrupted_run_resumes_without_redoing_finished_units(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    first = _runtime(offline_experiment(tmp_path), run_dir)
    assert first.stdout is not None
    assert first.stdout.readline().strip() == "in train-policy", first.communicate()[1]
    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=120)
    assert first.returncode == 130, err
    assert (
        "[train-policy] unit 1/2 plain: attempt 1 failed: RuntimeError: judge-pool went "
        "away; retry in 0.2 s" in err
    )
    assert "judge-pool exited with code -9 (log: " in err and "log tail:" in err
    assert "[runtime] starting judge-pool" in err
    assert _leftovers(run_dir) == []

    status = CliRunner().invoke(app, ["status", str(run_dir)])
    assert status.exit_code == 0
    assert "phase:   TrainingPolicy" in status.output
    assert any(line.split()[:2] == ["reasoning", "pending"] for line in status.output.splitlines())

    second = _runtime(None, run_dir)
    _, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    assert "[train-policy] started: 2 units, 1 done already" in err
    assert "judgelab: study finished" in err
    assert _leftovers(run_dir) == []

    calls = [tuple(json.loads(line)) for line in (run_dir / "calls.jsonl").read_text().splitlines()]
    assert Counter((stage, unit) for stage, unit, _ in calls) == Counter(
        {
            ("annotate", "gold"): 1,
            ("train-judges", "plain"): 1,
            ("train-judges", "reasoning"): 1,
            ("train-policy", "plain"): 2,
            ("train-policy", "reasoning"): 2,
            ("evaluate", "report"): 1,
        }
    )
    launched = Counter(
        (e["stage"], e["unit"])
        for e in RunStore(run_dir).phase_log()
        if e["event"] == "UnitLaunched"
    )
    assert launched == Counter((s, u) for s, u, _ in calls)
    report = (run_dir / "evaluate" / "report" / "report.md").read_text()
    assert report.splitlines() == ["gold", "plain", "plain", "reasoning", "reasoning"]
    state = RunStore(run_dir).load()
    assert state.phase == "Succeeded"
    assert {a.name: a.step for a in state.arms} == {"plain": 2, "reasoning": 2}


def _healthy(address: str) -> None:
    with grpc.insecure_channel(address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def _offline_runner(context: UnitContext, unit: Unit) -> None:
    """Small real work per unit; crashes the judge pool once; waits to be stopped once."""
    with (context.run_dir / "calls.jsonl").open("a") as calls:
        calls.write(json.dumps([unit.stage.value, unit.name, unit.attempt]) + "\n")
    out = context.unit_dir(unit)
    if unit.stage is Stage.TRAIN_POLICY:
        _healthy(context.address(JUDGE_POOL))
        if unit.name == "plain" and unit.attempt == 1:
            pool = context.services.child(JUDGE_POOL)
            assert pool is not None
            os.kill(pool.pid, signal.SIGKILL)
            if not context.cancelled.wait(30):
                raise AssertionError("the driver did not notice the crash")
            raise RuntimeError("judge-pool went away")
        mark = context.run_dir / STOP_MARK
        if unit.name == "reasoning" and not mark.exists():
            mark.touch()
            print("in train-policy", flush=True)
            context.cancelled.wait()
            return
        for step in (1, 2):
            context.report(step, 2, "steps")
        context.update_arm(ArmProgress(unit.name, unit.name, step=2))
    if unit.stage is Stage.EVALUATE:
        names = sorted(p.parent.name for p in context.run_dir.glob("*/*/done.txt"))
        (out / "report.md").write_text("\n".join(names) + "\n")
    (out / "done.txt").write_text(str(unit.attempt))


def _offline_argv(service: str, experiment: Path, redis_url: str) -> list[str]:
    # The rollout generator needs an in-process policy model; a second judge pool stands in.
    return service_argv(JUDGE_POOL if service == ROLLOUT else service, experiment, redis_url)


def _main() -> int:
    resume = sys.argv[1] == "--resume"
    experiment = None if resume else Path(sys.argv[1])
    runners = {stage: _offline_runner for stage in Stage}
    return run_cli(
        experiment,
        Path(sys.argv[2]),
        runners,
        resume,
        retry_policy=RetryPolicy(initial_delay_s=0.2),
        grace_s=5.0,
        service_argv=_offline_argv,
    )


# --- the built-in model -------------------------------------------------------------------

QUESTION = common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content="What is 2 + 2?")


def _quickstart_runner(context: UnitContext, unit: Unit) -> None:
    out = context.unit_dir(unit)
    if unit.stage is Stage.ANNOTATE:
        with grpc.insecure_channel(context.address(ANNOTATOR)) as channel:
            reply = gold_annotator_pb2_grpc.GoldAnnotatorStub(channel).Annotate(
                gold_annotator_pb2.AnnotateRequest(
                    experiment=context.experiment.metadata.name,
                    samples=[common_pb2.Sample(id="s1", prompt=[QUESTION], response="4.")],
                ),
                timeout=300,
            )
        gold = reply.annotations[0].score
        (out / "gold.json").write_text(
            json.dumps({"argmax": gold.argmax_score, "valid": gold.valid})
        )
    elif unit.stage is Stage.TRAIN_POLICY:
        with grpc.insecure_channel(context.address(ROLLOUT)) as channel:
            rollout_pb2_grpc.RolloutGeneratorStub(channel).Status(
                rollout_pb2.GeneratorStatusRequest(), timeout=30
            )
        with grpc.insecure_channel(context.address(JUDGE_POOL)) as channel:
            scores = (
                judge_pool_pb2_grpc.JudgePoolStub(channel)
                .Score(
                    judge_pool_pb2.ScoreRequest(
                        judge=unit.name,
                        samples=[common_pb2.Sample(id="s1", prompt=[QUESTION], response="4.")],
                    ),
                    timeout=300,
                )
                .scores
            )
        score = scores[0]
        context.update_arm(
            ArmProgress(
                unit.name,
                unit.name,
                step=1,
                proxy_reward=score.expected_score if score.valid else None,
            )
        )
        (out / "score.json").write_text(json.dumps({"expected": score.expected_score}))
    (out / "done.txt").write_text("ok")


def test_quickstart_services_with_the_builtin_model(tmp_path: Path, builtin_dir: Path) -> None:
    import io

    log = io.StringIO()
    runners = {stage: _quickstart_runner for stage in Stage}
    env_url = os.environ.pop("REDIS_URL", None)
    try:
        began = time.monotonic()
        state = run_experiment(
            QUICKSTART,
            tmp_path / "run",
            runners,
            retry_policy=RetryPolicy(max_attempts=1),
            progress=PlainProgress(log),
            grace_s=30.0,
        )
    finally:
        if env_url is not None:
            os.environ["REDIS_URL"] = env_url
    assert state.phase == "Succeeded", log.getvalue()
    text = log.getvalue()
    for command in ("gold-annotator", "judge-pool", "rollout-generator"):
        assert f"[runtime] {command} serving on 127.0.0.1:" in text
    gold = json.loads((tmp_path / "run" / "annotate" / "gold" / "gold.json").read_text())
    assert isinstance(gold["valid"], bool)
    for arm in ("plain", "reasoning"):
        scored = json.loads((tmp_path / "run" / "train-policy" / arm / "score.json").read_text())
        assert 0.0 <= scored["expected"] <= 9.0
    assert {a.name: a.step for a in state.arms} == {"plain": 1, "reasoning": 1}
    assert _leftovers(tmp_path / "run") == []
    print(f"quickstart services run: {time.monotonic() - began:.1f} s")


if __name__ == "__main__":
    sys.exit(_main())
