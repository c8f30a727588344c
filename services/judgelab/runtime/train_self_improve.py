"""The TrainPolicy unit of one ``dpo-self-judge`` arm, in this process.

The arm trains from ``policy.model`` on the policy-training prompts (Annotate's split, or the
same split carved from the data when no Annotate ran), writes its rounds under
``RUN/arms/{arm}/`` and is gold-evaluated against the starting policy on the held-out prompts
through the stage's gold annotator (``RUN/arms/{arm}/gold_win_rate.json``). The
``external-judge`` arm's comparisons go to the stage's judge pool.
"""

from __future__ import annotations

from judgelab.engines import build_engine
from judgelab.engines.transformers_engine import TransformersEngine
from judgelab.phases import ArmProgress
from judgelab.phases.stages import ANNOTATOR, EXTERNAL_JUDGE_UNIT, JUDGE_POOL
from judgelab.runtime.context import UnitContext
from judgelab.runtime.progress import Unit
from judgelab.selfimprove.arms import run_arm
from judgelab.selfimprove.prompts import load_policy_rows
from judgelab.units.gold_grpc import GrpcGold


def run_train_self_improve(context: UnitContext, unit: Unit) -> None:
    """Train and gold-evaluate arm ``unit.name``; raises if the run is cancelled meanwhile."""
    experiment = context.experiment
    train, held_out = load_policy_rows(context.run_dir, experiment)
    engine = build_engine(experiment.spec.policy.model)
    if not isinstance(engine, TransformersEngine):
        raise RuntimeError(
            f"dpo-self-judge trains the policy in process: policy.model needs the transformers "
            f"engine, not {experiment.spec.policy.model.engine!r}"
        )

    def report(done: int, total: int, note: str) -> None:
        if context.cancelled.is_set():
            raise RuntimeError(f"arm {unit.name} stopped: the run was cancelled")
        context.report(done, total, note)

    pool = context.address(JUDGE_POOL) if unit.name == EXTERNAL_JUDGE_UNIT else None
    gold = GrpcGold(context.address(ANNOTATOR), experiment.metadata.name)
    try:
        summary = run_arm(
            experiment,
            unit.name,
            engine,
            train,
            held_out,
            context.run_dir / "arms" / unit.name,
            gold,
            progress=report,
            judge_pool_address=pool,
        )
    finally:
        gold.close()
        engine.close()
    rounds = summary["training"].get("rounds")
    context.update_arm(
        ArmProgress(
            unit.name,
            step=len(rounds) if isinstance(rounds, list) else 1,
            gold_reward=summary.get("gold_end_mean"),
        )
    )
