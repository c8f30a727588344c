"""What a run shows: plain `[stage] unit k/n ...` lines off a terminal, rich bars on one, and
`judgelab status RUN_DIR` from the saved state."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from test_runtime_driver import Recorder, _driver
from typer.testing import CliRunner

from judgelab.cli import app
from judgelab.phases import Stage
from judgelab.runtime import NotARunDir, RuntimeSetupError, Unit, make_progress, run_experiment
from judgelab.runtime.lock import run_lock
from judgelab.runtime.progress import PlainProgress, RichProgress


def test_plain_lines_for_every_unit_event(tmp_path: Path) -> None:
    out = io.StringIO()
    view = make_progress(out)
    assert isinstance(view, PlainProgress)
    final = _driver(tmp_path, Recorder(flaky={("annotate", "gold")}), view).run()
    assert final.phase == "Succeeded"
    lines = out.getvalue().splitlines()
    assert lines[0] == "[annotate] started: 1 units, 0 done already"
    assert "[annotate] unit 1/1 gold: started (attempt 1)" in lines
    assert (
        "[annotate] unit 1/1 gold: attempt 1 failed: RuntimeError: flaky: first attempt fails; "
        "retry in 0 s" in lines
    )
    assert "[annotate] unit 1/1 gold: started (attempt 2)" in lines
    assert "[train-policy] unit 2/2 reasoning: 2/3 steps" in lines
    succeeded = [line for line in lines if line.startswith("[train-judges] unit 1/2 plain: succ")]
    assert len(succeeded) == 1 and "(1/2 done, about" in succeeded[0]
    assert lines[-1] == "[runtime] Succeeded: study finished"


def test_rich_bars_on_a_terminal() -> None:
    out = io.StringIO()
    view = make_progress(out, tty=True)
    assert isinstance(view, RichProgress)
    unit = Unit(Stage.TRAIN_POLICY, "plain", 1, 1, 2)
    view.stage_started(Stage.TRAIN_POLICY, 2, 0)
    view.unit_started(unit)
    view.unit_progress(unit, 4, 8, "steps [x]")
    view.unit_failed(unit, "boom [bad markup]", 10.0)
    view.unit_succeeded(unit, 1.5)
    view.close()
    text = " ".join(out.getvalue().split())  # rich wraps long lines at the console's width
    assert "[train-policy] unit 1/2 plain: started (attempt 1)" in text
    assert "boom [bad markup]; retry in 10 s" in text
    assert "train-policy" in text and "1/2" in text


def test_status_command_shows_stages_units_and_arms(tmp_path: Path) -> None:
    _driver(tmp_path, Recorder(flaky={("train-judges", "plain")})).run()
    result = CliRunner().invoke(app, ["status", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[1] == "phase:   Succeeded"
    assert any(line.split() == ["train-judges", "2/2", "done", "[Succeeded]"] for line in lines)
    plain = next(line for line in lines if line.split()[:2] == ["plain", "succeeded"])
    assert "attempts 2, failures 1" in plain
    assert "arm reasoning (judge reasoning): step 3, proxy 6.500, gold 5.000, KL 0.0100" in lines
    raw = json.loads(CliRunner().invoke(app, ["status", "--json", str(tmp_path)]).output)
    assert raw["phase"] == "Succeeded" and raw["units"]["annotate"]["gold"]["attempts"] == 1


def test_status_of_a_directory_that_is_not_a_run(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["status", str(tmp_path)])
    assert result.exit_code == 2
    assert f"{tmp_path} is not a judgelab run: it has no state.json" in result.output
    (tmp_path / "state.json").write_text("{not json")
    result = CliRunner().invoke(app, ["status", str(tmp_path)])
    assert result.exit_code == 2 and "is not a readable run state" in result.output


def test_one_runtime_per_run_directory(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        _driver(tmp_path, Recorder(), StopAtTrainPolicy()).run()
    with run_lock(tmp_path):
        with pytest.raises(
            RuntimeSetupError, match=f"another judgelab runtime \\(pid {os.getpid()}"
        ):
            run_experiment(None, tmp_path, {}, resume=True)
        result = CliRunner().invoke(app, ["status", str(tmp_path)])
        assert (
            f"phase:   TrainingPolicy (runtime pid {os.getpid()} is working on it)" in result.output
        )
    result = CliRunner().invoke(app, ["status", str(tmp_path)])
    assert f"(stopped: continue with `judgelab run --resume {tmp_path}`)" in result.output
    with pytest.raises(NotARunDir):
        run_experiment(None, tmp_path / "typo", {}, resume=True)
    assert not (tmp_path / "typo").exists()


class StopAtTrainPolicy(PlainProgress):
    def __init__(self) -> None:
        super().__init__(io.StringIO())

    def stage_started(self, stage: Stage, total: int, done: int) -> None:
        if stage is Stage.TRAIN_POLICY:
            raise KeyboardInterrupt
