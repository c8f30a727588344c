"""Setting conditions the Kubernetes way: one per type, transition time kept unless it flips."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from judgelab.phases.state import Condition, ConditionStatus, PhaseState, Record

SPEC_ACCEPTED, SERVICES_READY, READY = "SpecAccepted", "ServicesReady", "Ready"


def set_condition(
    state: PhaseState,
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    now: datetime,
) -> PhaseState:
    """Set one condition (stamped with the state's observed generation)."""
    old = state.condition(type_)
    since = old.since if old is not None and old.status == status else now
    new = Condition(type_, status, reason, message, since, state.observed_generation)
    if old == new:
        return state
    kept = tuple(c for c in state.conditions if c.type != type_)
    return replace(state, conditions=(*kept, new))


def log(state: PhaseState, record: Record) -> PhaseState:
    """Append a record to the phase log."""
    return replace(state, log=(*state.log, record))
