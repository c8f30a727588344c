"""The `status` of the Experiment resource, built from the phase state."""

from __future__ import annotations

from statistics import fmean
from typing import Any

from judgelab.phases.state import ArmProgress, Condition, PhaseState
from judgelab.spec.status import ExperimentStatus


def experiment_status(state: PhaseState) -> ExperimentStatus:
    """The typed status (fits the CRD's status schema by construction)."""
    proxy = [a.proxy_reward for a in state.arms if a.proxy_reward is not None]
    gold = [a.gold_reward for a in state.arms if a.gold_reward is not None]
    raw = {
        "phase": state.phase,
        "message": state.message,
        "observedGeneration": state.observed_generation,
        "step": min((a.step for a in state.arms), default=None),
        "proxyReward": fmean(proxy) if proxy else None,
        "goldReward": fmean(gold) if gold else None,
        "hacking": ",".join(a.name for a in state.arms if a.hacking),
        "conditions": [_condition(c) for c in state.conditions],
        "arms": [_arm(a) for a in state.arms],
    }
    return ExperimentStatus.model_validate(raw)


def status_dict(state: PhaseState) -> dict[str, Any]:
    """The status as the API server stores it (camelCase, JSON types, unset fields left out)."""
    return experiment_status(state).model_dump(by_alias=True, mode="json", exclude_none=True)


def _condition(c: Condition) -> dict[str, Any]:
    return {
        "type": c.type,
        "status": c.status,
        "reason": c.reason,
        "message": c.message,
        "lastTransitionTime": c.since,
        "observedGeneration": c.generation,
    }


def _arm(a: ArmProgress) -> dict[str, Any]:
    return {
        "name": a.name,
        "judge": a.judge,
        "step": a.step,
        "proxyReward": a.proxy_reward,
        "goldReward": a.gold_reward,
        "kl": a.kl,
        "hacking": a.hacking,
    }
