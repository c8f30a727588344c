"""kopf handlers: thin wrappers that hand each event to `ExperimentOperator`."""

from __future__ import annotations

from typing import Any

import kopf

from judgelab.crd import GROUP, PLURAL, VERSION
from judgelab_operator.labels import EXPERIMENT
from judgelab_operator.observations import observe_deployment, observe_job
from judgelab_operator.operator import Call, ExperimentOperator, observations_for

JOBS_INDEX, DEPLOYMENTS_INDEX = "experiment_jobs", "experiment_deployments"
WATCHED = {EXPERIMENT: kopf.PRESENT}


def register(registry: kopf.OperatorRegistry, operator: ExperimentOperator) -> None:
    """Register every handler of the operator in `registry`."""
    _register_activities(registry, operator)
    _register_indexes(registry)
    _register_experiments(registry, operator)


def _register_activities(registry: kopf.OperatorRegistry, operator: ExperimentOperator) -> None:
    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        operator.configure(settings)

    @kopf.on.probe(id="experiments", registry=registry)
    def experiments(**_: Any) -> int:
        return operator.probe()["experiments"]


def _register_indexes(registry: kopf.OperatorRegistry) -> None:
    @kopf.index("batch", "v1", "jobs", id=JOBS_INDEX, labels=WATCHED, registry=registry)
    def index_jobs(body: kopf.Body, **_: Any) -> Any:
        return _keyed(body, observe_job(body))

    @kopf.index(
        "apps", "v1", "deployments", id=DEPLOYMENTS_INDEX, labels=WATCHED, registry=registry
    )
    def index_deployments(body: kopf.Body, **_: Any) -> Any:
        return _keyed(body, observe_deployment(body))


def _register_experiments(registry: kopf.OperatorRegistry, operator: ExperimentOperator) -> None:
    interval = operator.config.reconcile_interval_s

    @kopf.on.create(GROUP, VERSION, PLURAL, id="install", registry=registry)
    async def on_create(**kwargs: Any) -> None:
        await operator.reconcile(_call(kwargs))

    @kopf.on.resume(GROUP, VERSION, PLURAL, id="resume", registry=registry)
    async def on_resume(**kwargs: Any) -> None:
        await operator.reconcile(_call(kwargs))

    @kopf.on.update(GROUP, VERSION, PLURAL, field="spec", id="spec-change", registry=registry)
    async def on_spec_change(**kwargs: Any) -> None:
        await operator.reconcile(_call(kwargs), spec_changed=True)

    @kopf.timer(GROUP, VERSION, PLURAL, interval=interval, id="reconcile", registry=registry)
    async def on_timer(**kwargs: Any) -> None:
        await operator.reconcile(_call(kwargs))

    @kopf.on.delete(GROUP, VERSION, PLURAL, id="uninstall", registry=registry)
    async def on_delete(**kwargs: Any) -> None:
        await operator.uninstall(_call(kwargs))


def _keyed(body: kopf.Body, seen: object | None) -> dict[tuple[str, str], object]:
    if seen is None:
        return {}
    return {(body.metadata.namespace or "", body.metadata.labels[EXPERIMENT]): seen}


def _call(kwargs: dict[str, Any]) -> Call:
    namespace, name = kwargs["namespace"], kwargs["name"]
    return Call(
        name=name,
        namespace=namespace,
        body=kwargs["body"],
        patch=kwargs["patch"],
        memo=kwargs["memo"],
        retry=kwargs.get("retry", 0),
        jobs=observations_for(kwargs.get(JOBS_INDEX), namespace, name),
        deployments=observations_for(kwargs.get(DEPLOYMENTS_INDEX), namespace, name),
    )
