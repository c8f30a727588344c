"""`judgelab run`: where a study's run directory is and the experiment copy its services read.

The run directory is ``RUNS_DIR/<metadata.name>`` (RUNS_DIR: ``--runs-dir``, else the spec's
``runtime.run_dir``). Every process of the study (services, learner, units) derives the same
directory from the copy the runtime keeps in it, whose ``runtime.run_dir`` is made absolute (and
``evaluation.baseline_answers``, resolved from the experiment file's folder and checked first).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import yaml

from judgelab.runtime.context import Runners
from judgelab.runtime.run import run_cli
from judgelab.spec import load_experiment
from judgelab.units.baseline_answers import absolute_baseline_path, check_baseline_file


def run_directory(experiment_path: Path, runs_dir: Path | None) -> tuple[Path, bytes]:
    """The run directory and the experiment text to keep in it (``SpecError`` if invalid)."""
    experiment = load_experiment(experiment_path)
    check_baseline_file(experiment, experiment_path)
    parent = (runs_dir or Path(experiment.spec.runtime.run_dir)).resolve()
    data = yaml.safe_load(experiment_path.read_text(encoding="utf-8"))
    data.setdefault("spec", {}).setdefault("runtime", {})["run_dir"] = str(parent)
    baseline = experiment.spec.evaluation.baseline_answers
    if baseline is not None:  # the copy lives in the run directory: keep the path meaning
        absolute = absolute_baseline_path(baseline, experiment_path)
        data["spec"]["evaluation"]["baseline_answers"] = absolute
    text = yaml.safe_dump(data, sort_keys=False).encode()
    return parent / experiment.metadata.name, text


def start_run(experiment_path: Path, runs_dir: Path | None, runners: Runners) -> int:
    """Start a new study; the exit code of ``run_cli``."""
    run_dir, text = run_directory(experiment_path, runs_dir)
    with tempfile.TemporaryDirectory(prefix="judgelab-run-") as tmp:
        resolved = Path(tmp) / experiment_path.name
        resolved.write_bytes(text)
        sys.stderr.write(f"judgelab: run directory {run_dir}\n")
        return run_cli(resolved, run_dir, runners)


def resume_run(run_dir: Path, runners: Runners) -> int:
    """Continue a stopped study from its own experiment copy; the exit code of ``run_cli``."""
    return run_cli(None, run_dir, runners, resume=True)
