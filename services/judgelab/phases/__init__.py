"""The phase machine: one study's stages, units, retries, conditions and status. No I/O.

The operator and the local runtime both drive it: they start units it calls runnable,
report what finished or failed, and persist `PhaseState.to_dict()` between steps.
"""

from __future__ import annotations

from judgelab.phases.changes import (
    FrozenChange,
    SpecReview,
    accept_spec,
    changed_paths,
    refuse_spec,
    review_spec,
    started_stages,
)
from judgelab.phases.conditions import READY, SERVICES_READY, SPEC_ACCEPTED, set_condition
from judgelab.phases.machine import (
    fail,
    fail_unit,
    interrupt,
    launch,
    next_retry,
    rejected,
    runnable,
    set_service,
    spec_dict,
    start,
    succeed,
    update_arm,
)
from judgelab.phases.retry import RetryPolicy
from judgelab.phases.stages import (
    SERVICES,
    STAGE_INFO,
    STAGES,
    ArmPlan,
    Stage,
    StageInfo,
    plan_arms,
    plan_units,
)
from judgelab.phases.state import (
    ArmProgress,
    Condition,
    PhaseState,
    Record,
    UnitState,
    UnitStatus,
)
from judgelab.phases.status import experiment_status, status_dict

__all__ = [
    "READY",
    "SERVICES",
    "SERVICES_READY",
    "SPEC_ACCEPTED",
    "STAGES",
    "STAGE_INFO",
    "ArmPlan",
    "ArmProgress",
    "Condition",
    "FrozenChange",
    "PhaseState",
    "Record",
    "RetryPolicy",
    "SpecReview",
    "Stage",
    "StageInfo",
    "UnitState",
    "UnitStatus",
    "accept_spec",
    "changed_paths",
    "experiment_status",
    "fail",
    "fail_unit",
    "interrupt",
    "launch",
    "next_retry",
    "plan_arms",
    "plan_units",
    "refuse_spec",
    "rejected",
    "review_spec",
    "runnable",
    "set_condition",
    "set_service",
    "spec_dict",
    "start",
    "started_stages",
    "status_dict",
    "succeed",
    "update_arm",
]
