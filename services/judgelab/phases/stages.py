"""The stages of a study, what each needs and freezes, and the plan of units for a spec."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from judgelab.spec import ExperimentSpec
from judgelab.spec.policy import DpoSelfJudgeAlgorithm
from judgelab.spec.status import Phase


class Stage(StrEnum):
    """One step of a study; each runs one or more units (Jobs, or processes locally)."""

    ANNOTATE = "annotate"
    TRAIN_JUDGES = "train-judges"
    TRAIN_POLICY = "train-policy"
    EVALUATE = "evaluate"


ANNOTATOR, JUDGE_POOL, ROLLOUT = "annotator", "judge-pool", "rollout"
SERVICES: tuple[str, ...] = (ANNOTATOR, JUDGE_POOL, ROLLOUT)
# Changing where the study keeps its state would orphan everything done so far.
_EVERYWHERE = ("runtime.redis_url", "runtime.run_dir", "runtime.seed")
# A training Job's pod template is immutable and its Job stays rendered after it finished, so
# the learner's shape is fixed once a training stage has started.
_LEARNER_SHAPE = ("resources.learner", "resources.gpu_resource")
# The gold evaluation every N policy steps reads these; the rest of `evaluation` is Evaluate's.
_TRAINING_EVALUATION = tuple(
    f"evaluation.{name}"
    for name in ("every_n_steps", "heldout_prompts", "samples_per_prompt", "seed", "hacking_margin")
)


@dataclass(frozen=True)
class StageInfo:
    """What a stage is called in status, which services it needs, which spec fields it reads."""

    phase: Phase
    condition: str
    services: tuple[str, ...]
    inputs: tuple[str, ...]


STAGE_INFO: Mapping[Stage, StageInfo] = {
    Stage.ANNOTATE: StageInfo(
        "Annotating",
        "Annotated",
        (ANNOTATOR,),
        ("data", "gold", "policy.model", "policy.generation", *_EVERYWHERE),
    ),
    Stage.TRAIN_JUDGES: StageInfo(
        "TrainingJudges",
        "JudgesTrained",
        (),
        ("data", "gold", "judges", *_LEARNER_SHAPE, *_EVERYWHERE),
    ),
    Stage.TRAIN_POLICY: StageInfo(
        "TrainingPolicy",
        "PolicyTrained",
        (ANNOTATOR, JUDGE_POOL, ROLLOUT),
        (
            "data",
            "gold",
            "judges",
            "arms",
            "policy",
            *_TRAINING_EVALUATION,
            *_LEARNER_SHAPE,
            *_EVERYWHERE,
        ),
    ),
    Stage.EVALUATE: StageInfo(
        "Evaluating",
        "Evaluated",
        (ANNOTATOR, JUDGE_POOL, ROLLOUT),
        ("data", "gold", "judges", "arms", "policy", "evaluation", *_EVERYWHERE),
    ),
}
STAGES: tuple[Stage, ...] = tuple(Stage)
GOLD_UNIT, REPORT_UNIT, SELF_JUDGE_UNIT = "gold", "report", "self-judge"
#: The dpo-self-judge arm whose comparisons come from `policy.algorithm.external_judge`.
EXTERNAL_JUDGE_UNIT = "external-judge"
#: dpo-self-judge's Annotate: the data splits only (no proxy judge needs gold labels).
SPLITS_UNIT = "splits"
DPO_SELF_JUDGE = "dpo-self-judge"


@dataclass(frozen=True)
class ArmPlan:
    """A policy arm: its name and the proxy judge it optimises ("" for self-judging)."""

    name: str
    judge: str


def plan_units(spec: ExperimentSpec) -> dict[Stage, tuple[str, ...]]:
    """The units of every stage. A stage without units is skipped (nothing to do)."""
    judges = tuple(j.name for j in spec.judges)
    return {
        Stage.ANNOTATE: _annotate_units(spec, judges),
        Stage.TRAIN_JUDGES: judges,
        Stage.TRAIN_POLICY: tuple(arm.name for arm in plan_arms(spec)),
        Stage.EVALUATE: (REPORT_UNIT,),
    }


def stage_services(spec: Mapping[str, Any], stage: Stage) -> tuple[str, ...]:
    """The services ``stage`` needs for this spec (``PhaseState.spec``, a plain mapping).
    dpo-self-judge trains and samples in process: only the gold annotator serves it, and the
    judge pool during TrainPolicy when an arm judges with its ``external_judge``."""
    algorithm = (spec.get("policy") or {}).get("algorithm") or {}
    if algorithm.get("name") == DPO_SELF_JUDGE:
        if stage == Stage.TRAIN_POLICY and algorithm.get("external_judge"):
            return (ANNOTATOR, JUDGE_POOL)
        return (ANNOTATOR,)
    return STAGE_INFO[stage].services


def _annotate_units(spec: ExperimentSpec, judges: tuple[str, ...]) -> tuple[str, ...]:
    """Gold labels when proxy judges train on them; a splits-only unit for dpo-self-judge, whose
    arms read the policy splits Annotate writes (one carving of the data for every arm)."""
    if judges:
        return (GOLD_UNIT,)
    if isinstance(spec.policy.algorithm, DpoSelfJudgeAlgorithm):
        return (SPLITS_UNIT,)
    return ()


def plan_arms(spec: ExperimentSpec) -> tuple[ArmPlan, ...]:
    """GRPO: one arm per `spec.arms` entry. dpo-self-judge: the loop, the external-judge loop
    when `external_judge` is set (its judge named), and each baseline."""
    algorithm = spec.policy.algorithm
    if isinstance(algorithm, DpoSelfJudgeAlgorithm):
        external = algorithm.external_judge
        arms = [ArmPlan(SELF_JUDGE_UNIT, "")]
        arms += [ArmPlan(EXTERNAL_JUDGE_UNIT, external)] if external else []
        return (*arms, *(ArmPlan(name, "") for name in algorithm.baselines))
    return tuple(ArmPlan(arm.name, arm.judge) for arm in spec.arms)
