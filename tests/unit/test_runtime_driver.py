"""The local runtime's driver with fake services and real (small) unit runners: it runs every
unit once, retries per the policy, persists after every transition, and resumes without
redoing finished work; spec changes on resume go through the phase machine's review."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from judgelab.phases import ArmProgress, PhaseState, RetryPolicy, Stage
from judgelab.runtime import (
    Interrupted,
    RunStore,
    RuntimeSetupError,
    SpecChangeRefused,
    Unit,
    UnitContext,
    open_run,
    resume,
    run_experiment,
)
from judgelab.runtime.driver import Driver
from judgelab.runtime.progress import PlainProgress, ProgressView
from judgelab.runtime.services import LocalServices

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart.yaml"
NO_WAIT = RetryPolicy(max_attempts=3, initial_delay_s=0.0)
ALL_UNITS = [
    ("annotate", "gold"),
    ("train-judges", "plain"),
    ("train-judges", "reasoning"),
    ("train-policy", "plain"),
    ("train-policy", "reasoning"),
    ("evaluate", "report"),
]


class FakeServices:
    """Stands in for LocalServices: every service is "up" at a made-up address."""

    def __init__(self) -> None:
        self.ensured: list[tuple[str, ...]] = []

    def ensure(self, services: tuple[str, ...]) -> list[str]:
        self.ensured.append(tuple(services))
        return []

    def crashed(self) -> list[str]:
        return []

    def address(self, service: str) -> str:
        return f"fake-{service}:1"


class Recorder:
    """Real small work per stage: files in the unit's directory, steps, arm numbers."""

    def __init__(self, flaky: set[tuple[str, str]] = frozenset(), broken: str = "") -> None:
        self.calls: list[tuple[str, str, int]] = []
        self.flaky = set(flaky)
        self.broken = broken

    def __call__(self, context: UnitContext, unit: Unit) -> None:
        self.calls.append((unit.stage.value, unit.name, unit.attempt))
        if (unit.stage.value, unit.name) in self.flaky:
            self.flaky.discard((unit.stage.value, unit.name))
            raise RuntimeError("flaky: first attempt fails")
        if unit.name == self.broken:
            raise ValueError(f"{unit.name} is broken")
        out = context.unit_dir(unit)
        if unit.stage is Stage.TRAIN_POLICY:
            for step in range(1, 4):
                context.report(step, 3, "steps")
            judge = unit.name
            context.update_arm(
                ArmProgress(unit.name, judge, step=3, proxy_reward=6.5, gold_reward=5.0, kl=0.01)
            )
        if unit.stage is Stage.EVALUATE:
            done = sorted(p.parent.name for p in context.run_dir.glob("*/*/done.txt"))
            (out / "report.md").write_text("units: " + ", ".join(done) + "\n")
        (out / "done.txt").write_text(f"{context.address('judge-pool')} attempt {unit.attempt}")


def _runners(recorder: Recorder) -> dict[Stage, Any]:
    return {stage: recorder for stage in Stage}


def _driver(
    run_dir: Path, recorder: Recorder, progress: ProgressView | None = None, **kwargs: Any
) -> Driver:
    store = RunStore(run_dir)
    if store.exists():
        experiment, state = resume(run_dir, kwargs.pop("experiment_path", None))
    else:
        experiment, state = open_run(store, QUICKSTART, resume=False)
    context = UnitContext(
        experiment,
        store.experiment_path,
        run_dir,
        "redis://fake:1/0",
        cast(LocalServices, FakeServices()),
        cast(Any, None),
    )
    view = progress if progress is not None else PlainProgress(io.StringIO())
    return Driver(store, state, context, _runners(recorder), view, NO_WAIT)


def _launches(run_dir: Path) -> Counter[tuple[str, str]]:
    return Counter(
        (e["stage"], e["unit"])
        for e in RunStore(run_dir).phase_log()
        if e["event"] == "UnitLaunched"
    )


def test_runs_every_unit_once_and_persists_the_result(tmp_path: Path) -> None:
    recorder = Recorder()
    final = _driver(tmp_path, recorder).run()
    assert final.phase == "Succeeded"
    assert [(s, n) for s, n, _ in recorder.calls] == ALL_UNITS
    report = (tmp_path / "evaluate" / "report" / "report.md").read_text()
    assert report == "units: gold, plain, plain, reasoning, reasoning\n"
    saved = PhaseState.from_dict(json.loads((tmp_path / "state.json").read_text()))
    assert saved == final
    assert {a.name: (a.step, a.gold_reward) for a in saved.arms} == {
        "plain": (3, 5.0),
        "reasoning": (3, 5.0),
    }
    assert _launches(tmp_path) == Counter(ALL_UNITS)
    events = [e["event"] for e in RunStore(tmp_path).phase_log()]
    assert events.count("UnitSucceeded") == 6 and events[-1] == "StudySucceeded"
    assert len(events) == len(saved.log)
    assert (tmp_path / "experiment.yaml").read_bytes() == QUICKSTART.read_bytes()
    assert not list(tmp_path.glob(".state.json.*"))  # atomic writes leave no temp files


def test_a_unit_that_fails_once_is_retried(tmp_path: Path) -> None:
    recorder = Recorder(flaky={("train-judges", "reasoning")})
    final = _driver(tmp_path, recorder).run()
    assert final.phase == "Succeeded"
    assert ("train-judges", "reasoning", 1) in recorder.calls
    assert ("train-judges", "reasoning", 2) in recorder.calls
    unit = final.unit(Stage.TRAIN_JUDGES, "reasoning")
    assert (unit.status, unit.attempts, unit.failures) == ("succeeded", 2, 1)
    retried = [e for e in RunStore(tmp_path).phase_log() if e["event"] == "UnitRetrying"]
    assert len(retried) == 1 and "RuntimeError: flaky" in retried[0]["message"]


def test_a_unit_failing_every_attempt_fails_the_study(tmp_path: Path) -> None:
    recorder = Recorder(broken="plain")
    final = _driver(tmp_path, recorder).run()
    assert final.phase == "Failed"
    assert "train-judges/plain failed 3 of 3 attempts" in final.message
    assert "ValueError: plain is broken" in final.message
    assert [c for c in recorder.calls if c[1] == "plain"] == [
        ("train-judges", "plain", 1),
        ("train-judges", "plain", 2),
        ("train-judges", "plain", 3),
    ]
    assert not any(s == "train-policy" for s, _, _ in recorder.calls)
    with pytest.raises(RuntimeSetupError, match="failed run cannot be resumed"):
        resume(tmp_path)


class StopDuringProgress(PlainProgress):
    """Ctrl-C arriving while `unit` reports steps (the driver's thread raises Interrupted)."""

    def __init__(self, unit: str) -> None:
        super().__init__(io.StringIO())
        self.unit = unit

    def unit_progress(self, unit: Unit, done: int, total: int, note: str) -> None:
        if unit.name == self.unit and unit.stage is Stage.TRAIN_POLICY:
            raise Interrupted(2)


def test_resume_continues_without_redoing_finished_units(tmp_path: Path) -> None:
    first = _driver(tmp_path, Recorder(), StopDuringProgress("reasoning"))
    with pytest.raises(Interrupted):
        first.run()
    first.interrupted()
    stopped = RunStore(tmp_path).load()
    assert stopped.current is Stage.TRAIN_POLICY
    assert stopped.unit(Stage.TRAIN_POLICY, "plain").status == "succeeded"
    assert stopped.unit(Stage.TRAIN_POLICY, "reasoning").status == "pending"

    recorder = Recorder()
    final = _driver(tmp_path, recorder).run()
    assert final.phase == "Succeeded"
    assert recorder.calls == [("train-policy", "reasoning", 2), ("evaluate", "report", 1)]
    launches = _launches(tmp_path)
    assert launches == Counter({**Counter(ALL_UNITS), ("train-policy", "reasoning"): 2})
    events = [e["event"] for e in RunStore(tmp_path).phase_log()]
    assert events.count("UnitInterrupted") == 1


def _changed(tmp_path: Path, edit: Any) -> Path:
    raw = yaml.safe_load(QUICKSTART.read_text())
    edit(raw["spec"])
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_resume_refuses_a_change_to_what_a_started_stage_read(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    first = _driver(run_dir, Recorder(), StopDuringProgress("plain"))
    with pytest.raises(Interrupted):
        first.run()
    first.interrupted()
    changed = _changed(tmp_path, lambda spec: spec["gold"].update(max_tokens=96))
    with pytest.raises(SpecChangeRefused) as refused:
        resume(run_dir, changed)
    assert "spec.gold.max_tokens is an input of Annotating, which has started" in str(refused.value)
    assert (run_dir / "experiment.yaml").read_bytes() == QUICKSTART.read_bytes()

    allowed = _changed(tmp_path, lambda spec: spec["runtime"].update(log_level="debug"))
    _, state = resume(run_dir, allowed)
    assert state.spec["runtime"]["log_level"] == "debug"
    assert "log_level: debug" in (run_dir / "experiment.yaml").read_text()


def test_run_experiment_refuses_missing_runners_and_an_existing_run(tmp_path: Path) -> None:
    partial = {Stage.ANNOTATE: Recorder()}
    with pytest.raises(RuntimeSetupError, match="no unit runner for stage"):
        run_experiment(QUICKSTART, tmp_path / "a", partial)
    assert not (tmp_path / "a" / "state.json").exists()
    _driver(tmp_path / "b", Recorder()).run()
    with pytest.raises(RuntimeSetupError, match="already holds a run"):
        run_experiment(QUICKSTART, tmp_path / "b", _runners(Recorder()))
    # A finished run resumes to its final state without starting anything.
    assert run_experiment(None, tmp_path / "b", {}, resume=True).phase == "Succeeded"
