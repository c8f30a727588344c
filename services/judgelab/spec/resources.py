"""Kubernetes resources per service. Nothing is guessed: unset means no request/limit."""

from __future__ import annotations

from pydantic import Field

from judgelab.spec.model import StrictModel

CPU_PATTERN = r"^([0-9]+m|[0-9]+(\.[0-9]+)?)$"
MEMORY_PATTERN = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"


class ServiceResources(StrictModel):
    """Replicas and per-pod resources of one service (ignored by the local runtime)."""

    replicas: int = Field(default=1, ge=1, le=256, description="Pods of this service.")
    cpu: str | None = Field(
        default=None,
        pattern=CPU_PATTERN,
        description="CPU request and limit per pod, a Kubernetes quantity (`500m`, `2`).",
    )
    memory: str | None = Field(
        default=None,
        pattern=MEMORY_PATTERN,
        description="Memory request and limit per pod, a Kubernetes quantity (`4Gi`).",
    )
    gpus: int = Field(
        default=0,
        ge=0,
        le=64,
        description="GPUs per pod (`nvidia.com/gpu` by default). Never guessed.",
    )


def _service() -> ServiceResources:
    return ServiceResources()


class ResourcesSpec(StrictModel):
    """Resources of each service of the experiment."""

    gpu_resource: str = Field(
        default="nvidia.com/gpu",
        min_length=1,
        description="Extended resource name that GPUs are requested as.",
    )
    annotator: ServiceResources = Field(
        default_factory=_service, description="Gold annotator (a client of the gold server)."
    )
    judge_pool: ServiceResources = Field(
        default_factory=_service, description="Judge pool serving the proxy judges."
    )
    rollout: ServiceResources = Field(
        default_factory=_service, description="Rollout generators sampling from the policy."
    )
    learner: ServiceResources = Field(
        default_factory=_service,
        description="Learner (policy and judge training); replicas > 1 runs under torchrun.",
    )
