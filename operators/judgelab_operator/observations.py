"""What the operator reads from the release's Jobs and Deployments (pure parsing)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from judgelab.phases import ArmProgress, Stage
from judgelab_operator.labels import (
    ATTEMPT,
    COMPONENT,
    PROGRESS_ANNOTATION,
    SERVICE_COMPONENTS,
    STAGE,
    UNIT,
)

SERVICE_OF_COMPONENT = {component: service for service, component in SERVICE_COMPONENTS.items()}

Outcome = Literal["running", "succeeded", "failed"]


@dataclass(frozen=True)
class JobObservation:
    """One attempt of one unit, as its Job reports it."""

    name: str
    stage: Stage
    unit: str
    attempt: int
    outcome: Outcome
    detail: str = ""
    progress: ArmProgress | None = None


@dataclass(frozen=True)
class DeploymentObservation:
    """Whether one service of the experiment is ready."""

    name: str
    service: str
    ready: bool


def observe_job(body: Mapping[str, Any]) -> JobObservation | None:
    """None for a Job that is not a unit of a study (missing or bad labels)."""
    meta = body.get("metadata") or {}
    labels = meta.get("labels") or {}
    try:
        stage = Stage(labels[STAGE])
        unit = str(labels[UNIT])
        attempt = int(labels[ATTEMPT])
    except (KeyError, ValueError):
        return None
    name = str(meta.get("name", ""))
    outcome, detail = _job_outcome(name, body.get("status") or {})
    progress = (
        _progress(unit, meta.get("annotations") or {}) if stage is Stage.TRAIN_POLICY else None
    )
    return JobObservation(name, stage, unit, attempt, outcome, detail, progress)


def observe_deployment(body: Mapping[str, Any]) -> DeploymentObservation | None:
    """None for a Deployment that is not one of the study's services."""
    meta = body.get("metadata") or {}
    service = SERVICE_OF_COMPONENT.get((meta.get("labels") or {}).get(COMPONENT, ""))
    if service is None:
        return None
    spec, status = body.get("spec") or {}, body.get("status") or {}
    wanted = int(spec.get("replicas", 1))
    ready = int(status.get("readyReplicas") or 0) >= wanted > 0
    generation, observed = meta.get("generation"), status.get("observedGeneration")
    if generation is not None and observed is not None and observed < generation:
        ready = False
    return DeploymentObservation(str(meta.get("name", "")), str(service), ready)


def _job_outcome(name: str, status: Mapping[str, Any]) -> tuple[Outcome, str]:
    for condition in status.get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            return "succeeded", ""
        if condition.get("type") == "Failed":
            why = ": ".join(str(condition[k]) for k in ("reason", "message") if condition.get(k))
            return "failed", f"Job {name} failed" + (f": {why}" if why else "")
    return "running", ""


def _progress(unit: str, annotations: Mapping[str, str]) -> ArmProgress | None:
    raw = annotations.get(PROGRESS_ANNOTATION)
    if not raw:
        return None
    try:
        data = json.loads(raw)
        return ArmProgress(
            name=unit,
            step=int(data.get("step", 0)),
            proxy_reward=_number(data.get("proxyReward")),
            gold_reward=_number(data.get("goldReward")),
            kl=_number(data.get("kl")),
            hacking=bool(data.get("hacking", False)),
        )
    except (ValueError, TypeError, AttributeError):
        return None


def _number(value: Any) -> float | None:
    number = None if value is None else float(value)
    return number if number is not None and math.isfinite(number) else None
