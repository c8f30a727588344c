"""One reconciliation step on the phase state from what the cluster shows (pure)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime

from judgelab import phases
from judgelab.phases import SERVICES, PhaseState, RetryPolicy
from judgelab_operator.observations import DeploymentObservation, JobObservation


def observe(
    state: PhaseState,
    jobs: Iterable[JobObservation],
    deployments: Iterable[DeploymentObservation],
    now: datetime,
    policy: RetryPolicy,
) -> PhaseState:
    """Service readiness, finished or failed attempts, and arm progress into the state."""
    if state.terminal:
        return state
    deployments = list(deployments)
    for service in SERVICES:
        ready = any(d.ready for d in deployments if d.service == service)
        state = phases.set_service(state, service, ready, now)
    for job in sorted(jobs, key=lambda j: (j.stage.value, j.unit, j.attempt)):
        state = _observe_job(state, job, now, policy)
    return state


def launch_runnable(state: PhaseState, now: datetime) -> PhaseState:
    """Launch every unit the machine says may run now."""
    for stage, unit in phases.runnable(state, now):
        state = phases.launch(state, stage, unit, now)
    return state


def _observe_job(
    state: PhaseState, job: JobObservation, now: datetime, policy: RetryPolicy
) -> PhaseState:
    if job.progress is not None:
        known = next((a for a in state.arms if a.name == job.unit), None)
        if known is not None:
            state = phases.update_arm(state, replace(job.progress, judge=known.judge))
    unit = state.units.get(job.stage, {}).get(job.unit)
    if unit is None or unit.status != "running" or unit.attempts != job.attempt:
        return state
    if job.outcome == "succeeded":
        return phases.succeed(state, job.stage, job.unit, now, f"Job {job.name} complete")
    if job.outcome == "failed":
        return phases.fail_unit(state, job.stage, job.unit, job.detail, now, policy)
    return state
