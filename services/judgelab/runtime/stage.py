"""``python -m judgelab.runtime.stage EXPERIMENT --stage=STAGE --unit=UNIT``: one unit of the
Annotate or Evaluate stage, as the experiment chart's Jobs run it in a cluster.

The services are reached at ``JUDGELAB_GOLD_ADDRESS`` / ``JUDGELAB_JUDGE_POOL_ADDRESS`` (set by
the chart); the run directory is ``runtime.run_dir/<name>`` as for every other process. Progress
goes to stderr as lines; a failure exits 1 with one message (the Job's pod log says why).
Training stages run in ``judgelab.learner.main`` (torchrun).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from judgelab.phases import Stage
from judgelab.spec import Experiment, load_experiment


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="judgelab.runtime.stage", description=__doc__)
    parser.add_argument("experiment", type=Path, help="Experiment YAML file")
    parser.add_argument("--stage", required=True, choices=[Stage.ANNOTATE, Stage.EVALUATE])
    parser.add_argument("--unit", required=True, help="The unit of the stage (gold, report)")
    parser.add_argument("--metrics-port", type=int, default=-1, help="Unused: no metrics yet")
    return parser.parse_args(argv)


def required_address(variable: str) -> str:
    value = os.environ.get(variable, "").strip()
    if not value:
        raise SystemExit(f"judgelab: {variable} is not set (host:port of the service)")
    return value


def run_stage(experiment: Experiment, stage: str) -> None:
    run = Path(experiment.spec.runtime.run_dir) / experiment.metadata.name
    gold = required_address("JUDGELAB_GOLD_ADDRESS")
    if stage == Stage.ANNOTATE:
        from judgelab.units.annotate import run_annotate

        run_annotate(experiment, run, gold_address=gold)
        return
    from judgelab.evaluation.report import build_report
    from judgelab.units.evaluate import run_evaluate

    run_evaluate(experiment, run, gold, required_address("JUDGELAB_JUDGE_POOL_ADDRESS"))
    build_report(run)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        run_stage(load_experiment(args.experiment), args.stage)
    except SystemExit:
        raise
    except Exception as error:  # one line for the pod log, not a traceback
        sys.stderr.write(f"judgelab: {args.stage}/{args.unit} failed: {error}\n")
        raise SystemExit(1) from error


if __name__ == "__main__":
    main()
