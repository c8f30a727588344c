"""Helm values of the experiment chart, derived from the accepted spec and the phase state.

Contract with `charts/judgelab-experiment` (the chart must render exactly these keys):

* ``experiment.name``: the Experiment; every object carries the label ``judgelab.io/experiment``.
* ``spec``: the accepted Experiment spec (snake_case, as `judgelab validate` reads it); the
  chart mounts it as the services' experiment file.
* ``phase``, ``active``: the study's phase; with ``active: false`` (Succeeded/Failed) the
  chart renders no service Deployments (nothing keeps GPUs busy), only volumes and Jobs.
* ``services.<annotator|judgePool|rollout|learner>``: replicas, cpu, memory, gpus; the
  Deployments are labelled ``app.kubernetes.io/component: annotator|judge-pool|rollout``.
* ``jobs[]``: one Job per entry, labelled ``judgelab.io/stage``, ``judgelab.io/unit``,
  ``judgelab.io/attempt`` from the entry (a new attempt is a new Job name).
* ``persistence.keep``: annotate the checkpoint/result PVC ``helm.sh/resource-policy: keep``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from judgelab.phases import STAGES, PhaseState

SERVICE_KEYS = {
    "annotator": "annotator",
    "judge_pool": "judgePool",
    "rollout": "rollout",
    "learner": "learner",
}


def release_name(experiment: str) -> str:
    """The release is named after the Experiment (names are at most 40 characters)."""
    return experiment


def chart_values(name: str, state: PhaseState, keep_data: bool) -> dict[str, Any]:
    """The chart values for one study in its current state."""
    resources: Mapping[str, Any] = state.spec.get("resources") or {}
    return {
        "experiment": {"name": name},
        "spec": dict(state.spec),
        "phase": state.phase,
        "active": not state.terminal,
        "gpuResource": resources.get("gpu_resource", "nvidia.com/gpu"),
        "services": {
            key: _service(resources.get(field) or {}) for field, key in SERVICE_KEYS.items()
        },
        "jobs": _jobs(state),
        "persistence": {"keep": keep_data},
    }


def values_digest(values: Mapping[str, Any]) -> str:
    """A stable digest: the release is upgraded only when it changes."""
    text = json.dumps(values, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _service(raw: Mapping[str, Any]) -> dict[str, Any]:
    out = {"replicas": int(raw.get("replicas", 1)), "gpus": int(raw.get("gpus", 0))}
    out.update({k: raw[k] for k in ("cpu", "memory") if raw.get(k) is not None})
    return out


def _jobs(state: PhaseState) -> list[dict[str, Any]]:
    # The latest attempt of every launched unit stays rendered (its logs stay readable).
    return [
        {"stage": stage.value, "unit": name, "attempt": unit.attempts}
        for stage in STAGES
        for name, unit in state.units.get(stage, {}).items()
        if unit.attempts > 0
    ]
