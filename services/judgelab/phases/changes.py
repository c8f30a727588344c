"""Which spec changes a running study takes: a started stage's inputs are frozen.

A stage freezes its inputs once it has launched work (finished stages included): its
results were produced from them, and a later stage mixing old and new inputs would not be
one study. Everything else (replicas, resources, log level, inputs of stages still ahead)
is taken and rolled out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from judgelab.phases.conditions import SPEC_ACCEPTED, log, set_condition
from judgelab.phases.machine import spec_dict
from judgelab.phases.stages import STAGE_INFO, STAGES, Stage, plan_arms, plan_units
from judgelab.phases.state import ArmProgress, PhaseState, Record, UnitState
from judgelab.spec import ExperimentSpec


@dataclass(frozen=True)
class FrozenChange:
    """A changed field that a started stage read."""

    path: str
    stage: Stage


@dataclass(frozen=True)
class SpecReview:
    """The verdict on a new spec: changed fields, and those that may not change any more."""

    changed: tuple[str, ...]
    frozen: tuple[FrozenChange, ...]

    @property
    def accepted(self) -> bool:
        """Whether the new spec can be taken."""
        return not self.frozen

    def message(self) -> str:
        """One line for a condition: which fields, which stage, what to do."""
        if self.accepted:
            return "changed: " + (", ".join(self.changed) or "nothing")
        parts = [
            f"spec.{c.path} is an input of {STAGE_INFO[c.stage].phase}, which has started"
            for c in self.frozen
        ]
        return "; ".join(parts) + "; revert these fields or create a new Experiment"


def started_stages(state: PhaseState) -> list[Stage]:
    """Stages that launched work (their inputs are frozen)."""
    return [
        stage
        for stage in STAGES
        if any(u.attempts > 0 for u in state.units.get(stage, {}).values())
    ]


def review_spec(state: PhaseState, spec: ExperimentSpec) -> SpecReview:
    """Compare a new spec with the accepted one."""
    changed = tuple(changed_paths(state.spec, spec_dict(spec)))
    frozen: list[FrozenChange] = []
    started = started_stages(state)
    for path in changed:
        owner = next((s for s in started if _reads(STAGE_INFO[s].inputs, path)), None)
        if owner is not None:
            frozen.append(FrozenChange(path, owner))
    return SpecReview(changed, tuple(frozen))


def accept_spec(
    state: PhaseState, spec: ExperimentSpec, generation: int | None, now: datetime
) -> PhaseState:
    """Take a reviewed spec: stages not started yet are planned again from it."""
    review = review_spec(state, spec)
    if not review.accepted:
        raise ValueError(review.message())
    state = replace(
        state, spec=spec_dict(spec), generation=generation, observed_generation=generation
    )
    state = _replan(state, spec)
    state = set_condition(state, SPEC_ACCEPTED, "True", "Accepted", review.message(), now)
    return log(state, Record(now, "SpecAccepted", review.message()))


def refuse_spec(
    state: PhaseState, reason: str, message: str, generation: int | None, now: datetime
) -> PhaseState:
    """Keep the accepted spec and say why the new one (`generation`) was not taken."""
    state = replace(state, observed_generation=generation)
    state = set_condition(state, SPEC_ACCEPTED, "False", reason, message, now)
    return log(state, Record(now, "SpecRefused", message, warning=True))


def changed_paths(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted paths (`judges[0].model.name`) where two JSON values differ."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        paths: list[str] = []
        for key in sorted(set(old) | set(new)):
            sub = f"{prefix}.{key}" if prefix else str(key)
            paths += changed_paths(old.get(key), new.get(key), sub)
        return paths
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [
            p
            for i, (a, b) in enumerate(zip(old, new, strict=True))
            for p in changed_paths(a, b, f"{prefix}[{i}]")
        ]
    return [] if old == new else [prefix]


def _reads(inputs: tuple[str, ...], path: str) -> bool:
    def under(child: str, parent: str) -> bool:
        return child == parent or child.startswith((parent + ".", parent + "["))

    return any(under(path, i) or under(i, path) for i in inputs)


def _replan(state: PhaseState, spec: ExperimentSpec) -> PhaseState:
    started = set(started_stages(state))
    units = dict(state.units)
    for stage, names in plan_units(spec).items():
        # The current stage is planned again only while it has launched nothing and keeps work.
        if stage not in started and (stage != state.current or names):
            units[stage] = {name: UnitState() for name in names}
    known = {a.name: a for a in state.arms}
    arms = tuple(known.get(a.name, ArmProgress(a.name, a.judge)) for a in plan_arms(spec))
    return replace(state, units=units, arms=arms)
