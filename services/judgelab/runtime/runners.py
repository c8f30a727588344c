"""The unit runner of every stage, as `judgelab run` wires them.

Annotate labels the judge splits through the gold annotator service; TrainJudges trains one
proxy judge per unit (the judge pool, started for the next stage, serves the trained adapters);
TrainPolicy runs one arm's learner against the running services; Evaluate scores every arm's
final outputs and writes the report.

`IN_PROCESS` are the runners themselves; `RUNNERS` (what `judgelab run` uses) runs each unit
that loads a model in a child process (`unit_process`), so the driver's memory stays small.
A GRPO arm's unit only feeds prompts and watches its learner, itself a child process.
"""

from __future__ import annotations

from judgelab.phases import Stage
from judgelab.phases.stages import ANNOTATOR, JUDGE_POOL
from judgelab.runtime.context import Runners, UnitContext
from judgelab.runtime.progress import Unit
from judgelab.runtime.train_policy import run_train_policy
from judgelab.runtime.unit_process import run_in_child
from judgelab.spec.policy import DpoSelfJudgeAlgorithm


def run_annotate_unit(context: UnitContext, unit: Unit) -> None:
    from judgelab.units.annotate import run_annotate

    run_annotate(
        context.experiment,
        context.run_dir,
        gold_address=context.address(ANNOTATOR),
        progress=context.report,
        cancelled=context.cancelled,
    )


def run_train_judge_unit(context: UnitContext, unit: Unit) -> None:
    from judgelab.units.judge_training import run_train_judge

    run_train_judge(context.experiment, context.run_dir, unit.name, progress=context.report)


def run_evaluate_unit(context: UnitContext, unit: Unit) -> None:
    from judgelab.evaluation.report import build_report
    from judgelab.units.evaluate import run_evaluate

    # dpo-self-judge has no proxy judges, so no judge pool runs for it.
    self_improve = isinstance(context.experiment.spec.policy.algorithm, DpoSelfJudgeAlgorithm)
    run_evaluate(
        context.experiment,
        context.run_dir,
        gold_address=context.address(ANNOTATOR),
        judge_pool_address="" if self_improve else context.address(JUDGE_POOL),
        progress=context.report,
        cancelled=context.cancelled,
    )
    build_report(context.run_dir)


def run_train_policy_unit(context: UnitContext, unit: Unit) -> None:
    """GRPO arms run the learner against the services; dpo-self-judge arms train in process."""
    if isinstance(context.experiment.spec.policy.algorithm, DpoSelfJudgeAlgorithm):
        from judgelab.runtime.train_self_improve import run_train_self_improve

        run_train_self_improve(context, unit)
    else:
        run_train_policy(context, unit)


def run_train_policy_child(context: UnitContext, unit: Unit) -> None:
    if isinstance(context.experiment.spec.policy.algorithm, DpoSelfJudgeAlgorithm):
        run_in_child(context, unit)
    else:
        run_train_policy(context, unit)


IN_PROCESS: Runners = {
    Stage.ANNOTATE: run_annotate_unit,
    Stage.TRAIN_JUDGES: run_train_judge_unit,
    Stage.TRAIN_POLICY: run_train_policy_unit,
    Stage.EVALUATE: run_evaluate_unit,
}

RUNNERS: Runners = {
    Stage.ANNOTATE: run_in_child,
    Stage.TRAIN_JUDGES: run_in_child,
    Stage.TRAIN_POLICY: run_train_policy_child,
    Stage.EVALUATE: run_in_child,
}
