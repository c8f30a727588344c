"""Transitions of the phase machine. Pure: time comes in as `now`, effects go out as state.

The driver (operator or local runtime) asks :func:`runnable` what to start, starts it, calls
:func:`launch`, and reports back with :func:`succeed` / :func:`fail_unit`. Every transition
appends to the phase log; the driver shows new records (Kubernetes Events, progress lines).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from judgelab.phases.conditions import READY, SERVICES_READY, SPEC_ACCEPTED, log, set_condition
from judgelab.phases.retry import RetryPolicy
from judgelab.phases.stages import (
    STAGE_INFO,
    STAGES,
    Stage,
    plan_arms,
    plan_units,
    stage_services,
)
from judgelab.phases.state import ArmProgress, PhaseState, Record, UnitState
from judgelab.spec import ExperimentSpec


def spec_dict(spec: ExperimentSpec) -> dict[str, Any]:
    """The canonical JSON form of a spec that the state keeps and compares."""
    return spec.model_dump(mode="json", by_alias=True, exclude_none=True)


def start(spec: ExperimentSpec, now: datetime, generation: int | None = None) -> PhaseState:
    """A new study: every unit pending, the first stage that has work entered."""
    plan = plan_units(spec)
    units = {stage: {name: UnitState() for name in names} for stage, names in plan.items()}
    state = PhaseState(
        spec=spec_dict(spec),
        generation=generation,
        observed_generation=generation,
        phase="Pending",
        message="",
        current=None,
        units=units,
        arms=tuple(ArmProgress(a.name, a.judge) for a in plan_arms(spec)),
    )
    state = set_condition(state, SPEC_ACCEPTED, "True", "Accepted", "spec is valid", now)
    for stage in STAGES:
        condition = STAGE_INFO[stage].condition
        state = set_condition(state, condition, "False", "Pending", "not started yet", now)
    state = log(state, Record(now, "StudyStarted", "study started"))
    return _enter(state, 0, now)


def rejected(problems: Sequence[str], now: datetime, generation: int | None = None) -> PhaseState:
    """A study whose spec is invalid: Failed at once, the problems in a condition."""
    message = "; ".join(problems) or "invalid spec"
    state = PhaseState({}, generation, generation, "Failed", message, None, {})
    state = set_condition(state, SPEC_ACCEPTED, "False", "InvalidSpec", message, now)
    state = set_condition(state, READY, "False", "InvalidSpec", message, now)
    return log(state, Record(now, "InvalidSpec", message, warning=True))


def runnable(state: PhaseState, now: datetime) -> list[tuple[Stage, str]]:
    """Units to launch now: pending ones, and retrying ones whose back-off is over."""
    stage = state.current
    if state.terminal or stage is None or _missing_services(state, stage):
        return []
    return [
        (stage, name)
        for name, unit in state.units[stage].items()
        if unit.status == "pending"
        or (unit.status == "retrying" and (unit.retry_at is None or unit.retry_at <= now))
    ]


def launch(state: PhaseState, stage: Stage, name: str, now: datetime) -> PhaseState:
    """The driver started the unit (attempt number = `attempts` afterwards)."""
    unit = state.unit(stage, name)
    if state.terminal or unit.status not in ("pending", "retrying"):
        return state
    unit = replace(unit, status="running", attempts=unit.attempts + 1, retry_at=None)
    state = _put(state, stage, name, unit)
    record = Record(
        now,
        "UnitLaunched",
        f"{stage}/{name} attempt {unit.attempts} launched",
        stage.value,
        name,
        unit.attempts,
    )
    return _refresh(log(state, record), now)


def succeed(
    state: PhaseState, stage: Stage, name: str, now: datetime, message: str = ""
) -> PhaseState:
    """A running unit finished; the stage finishes when all its units have."""
    unit = state.unit(stage, name)
    if state.terminal or unit.status != "running":
        return state
    state = _put(state, stage, name, replace(unit, status="succeeded", message=message))
    text = f"{stage}/{name} succeeded" + (f": {message}" if message else "")
    state = log(state, Record(now, "UnitSucceeded", text, stage.value, name, unit.attempts))
    if all(u.status == "succeeded" for u in state.units[stage].values()):
        return _finish_stage(state, stage, now)
    return _refresh(state, now)


def fail_unit(
    state: PhaseState,
    stage: Stage,
    name: str,
    error: str,
    now: datetime,
    policy: RetryPolicy,
) -> PhaseState:
    """A running unit failed: retry after a back-off, or fail the study once the budget is spent."""
    unit = state.unit(stage, name)
    if state.terminal or unit.status != "running":
        return state
    failures = unit.failures + 1
    if not policy.allows_retry(failures):
        state = _put(
            state, stage, name, replace(unit, status="failed", failures=failures, message=error)
        )
        text = f"{stage}/{name} failed {failures} of {policy.max_attempts} attempts; last: {error}"
        return fail(state, "AttemptsExhausted", text, now)
    delay = policy.delay_s(failures)
    retry_at = now + timedelta(seconds=delay)
    unit = replace(unit, status="retrying", failures=failures, message=error, retry_at=retry_at)
    text = (
        f"{stage}/{name} attempt {unit.attempts} failed: {error}; "
        f"retry {failures + 1} of {policy.max_attempts} in {delay:g}s"
    )
    state = _put(state, stage, name, unit)
    state = log(state, Record(now, "UnitRetrying", text, stage.value, name, unit.attempts, True))
    condition = STAGE_INFO[stage].condition
    return _refresh(set_condition(state, condition, "False", "Retrying", text, now), now)


def fail(state: PhaseState, reason: str, message: str, now: datetime) -> PhaseState:
    """The study failed for `reason` (CamelCase); nothing more will run."""
    if state.terminal:
        return state
    if state.current is not None:
        condition = STAGE_INFO[state.current].condition
        state = set_condition(state, condition, "False", reason, message, now)
    state = replace(state, phase="Failed", message=message)
    state = set_condition(state, READY, "False", reason, message, now)
    return log(state, Record(now, "StudyFailed", message, warning=True))


def set_service(state: PhaseState, service: str, ready: bool, now: datetime) -> PhaseState:
    """A service became ready or stopped being ready."""
    if state.services.get(service) == ready:
        return state
    return _refresh(replace(state, services={**state.services, service: ready}), now)


def update_arm(state: PhaseState, progress: ArmProgress) -> PhaseState:
    """Replace one arm's numbers (unknown arms are ignored)."""
    arms = tuple(progress if a.name == progress.name else a for a in state.arms)
    return replace(state, arms=arms)


def interrupt(state: PhaseState, now: datetime) -> PhaseState:
    """The driver died (local runtime resume): running units go back to pending."""
    for stage, units in state.units.items():
        for name, unit in units.items():
            if unit.status == "running":
                state = _put(state, stage, name, replace(unit, status="pending"))
                text = f"{stage}/{name} attempt {unit.attempts} interrupted"
                state = log(
                    state,
                    Record(now, "UnitInterrupted", text, stage.value, name, unit.attempts, True),
                )
    return _refresh(state, now)


def next_retry(state: PhaseState) -> datetime | None:
    """When the earliest back-off ends (None if no unit is waiting to retry)."""
    times = [
        u.retry_at
        for units in state.units.values()
        for u in units.values()
        if u.status == "retrying" and u.retry_at is not None
    ]
    return min(times, default=None)


# --- internals -----------------------------------------------------------------------------


def _put(state: PhaseState, stage: Stage, name: str, unit: UnitState) -> PhaseState:
    units = {**state.units, stage: {**state.units[stage], name: unit}}
    return replace(state, units=units)


def _enter(state: PhaseState, index: int, now: datetime) -> PhaseState:
    for stage in STAGES[index:]:
        info = STAGE_INFO[stage]
        if state.units.get(stage):
            state = replace(state, current=stage, phase=info.phase)
            state = set_condition(state, info.condition, "False", "InProgress", "started", now)
            state = log(state, Record(now, "StageStarted", f"{stage} started", stage.value))
            return _refresh(state, now)
        text = f"{stage} has nothing to do for this study"
        state = set_condition(state, info.condition, "True", "NotNeeded", text, now)
        state = log(state, Record(now, "StageSkipped", text, stage.value))
    state = replace(state, current=None, phase="Succeeded", message="study finished")
    state = set_condition(state, READY, "True", "Succeeded", "study finished", now)
    return log(state, Record(now, "StudySucceeded", "study finished"))


def _finish_stage(state: PhaseState, stage: Stage, now: datetime) -> PhaseState:
    info = STAGE_INFO[stage]
    text = f"{stage} finished ({len(state.units[stage])} units)"
    state = set_condition(state, info.condition, "True", "Succeeded", text, now)
    state = log(state, Record(now, "StageSucceeded", text, stage.value))
    return _enter(state, STAGES.index(stage) + 1, now)


def _missing_services(state: PhaseState, stage: Stage) -> list[str]:
    return [s for s in stage_services(state.spec, stage) if not state.services.get(s)]


def _refresh(state: PhaseState, now: datetime) -> PhaseState:
    stage = state.current
    if state.terminal or stage is None:
        return state
    units = state.units[stage]
    done = [n for n, u in units.items() if u.status == "succeeded"]
    message = f"{stage}: {len(done)} of {len(units)} units done"
    missing = _missing_services(state, stage)
    if missing:
        waiting = f"waiting for {', '.join(missing)} to become ready"
        state = set_condition(state, SERVICES_READY, "False", "NotReady", waiting, now)
        message += f"; {waiting}"
    else:
        needed = ", ".join(stage_services(state.spec, stage))
        text = f"{needed} ready" if needed else "no services needed"
        state = set_condition(state, SERVICES_READY, "True", "Ready", text, now)
    state = replace(state, message=message)
    return set_condition(state, READY, "False", state.phase, message, now)
