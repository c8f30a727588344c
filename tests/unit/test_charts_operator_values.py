"""The operator and the experiment chart agree: real operator values, rendered by real Helm.

The values come from the operator's own code (`judgelab_operator.values.chart_values`) for
examples/quickstart.yaml driven through the phase machine; the platform chart's base values go
under them as `helm -f base -f -` would put them. Every object is validated strictly against
the Kubernetes OpenAPI schemas, and the operator's own parsers (`observe_job`,
`observe_deployment`) must find in the render what they look for. The fake Helm of the
operator tests (tests/operator/fake_helm.py) must name and label objects as the chart does.
"""

from __future__ import annotations

import copy
import importlib.util
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from charts_support import EXPERIMENT, PLATFORM, ROOT, Rendered, render

from judgelab import phases
from judgelab.phases import PhaseState, RetryPolicy, Stage
from judgelab.spec import load_experiment, validate_mapping
from judgelab_operator.labels import ATTEMPT, STAGE, UNIT
from judgelab_operator.labels import EXPERIMENT as EXPERIMENT_LABEL
from judgelab_operator.observations import observe_deployment, observe_job
from judgelab_operator.values import chart_values, release_name

KUBERNETES = kubernetes_validate.latest_version()
T0 = datetime(2025, 1, 1, tzinfo=UTC)
NAME = "quickstart"


def _quickstart_training_policy() -> PhaseState:
    """The quickstart study in TrainingPolicy; judge `reasoning` needed a second attempt."""
    raw = yaml.safe_load((ROOT / "examples/quickstart.yaml").read_text("utf-8"))
    state = phases.start(validate_mapping(raw).spec, T0, generation=1)
    for service in phases.SERVICES:
        state = phases.set_service(state, service, True, T0)
    state = _launch(state, T0)
    state = phases.succeed(state, Stage.ANNOTATE, "gold", T0)
    state = _launch(state, T0)
    state = phases.fail_unit(state, Stage.TRAIN_JUDGES, "reasoning", "OOM", T0, RetryPolicy())
    later = T0 + timedelta(hours=1)
    state = _launch(state, later)
    for judge in ("plain", "reasoning"):
        state = phases.succeed(state, Stage.TRAIN_JUDGES, judge, later)
    state = _launch(state, later)
    assert state.phase == "TrainingPolicy"
    return state


def _launch(state: PhaseState, now: datetime) -> PhaseState:
    for stage, unit in phases.runnable(state, now):
        state = phases.launch(state, stage, unit, now)
    return state


def _merged(base: Any, over: Any) -> Any:
    """Helm's merge of `-f base -f over`: maps merge key by key, anything else is replaced."""
    if isinstance(base, dict) and isinstance(over, dict):
        return {k: _merged(base.get(k), v) if k in base else v for k, v in over.items()} | {
            k: v for k, v in base.items() if k not in over
        }
    return copy.deepcopy(over)


def _base_values() -> dict[str, Any]:
    config_map = render(PLATFORM, {}).one("ConfigMap", "experiment-values")
    loaded: dict[str, Any] = yaml.safe_load(config_map["data"]["experiment-values.yaml"])
    return loaded


def _render(state: PhaseState, keep: bool = True) -> tuple[dict[str, Any], Rendered]:
    operator_values = chart_values(release_name(NAME), state, keep)
    values = _merged(_base_values(), operator_values)
    return operator_values, render(EXPERIMENT, values, release=release_name(NAME))


@pytest.fixture(scope="module")
def training() -> tuple[PhaseState, dict[str, Any], Rendered]:
    state = _quickstart_training_policy()
    values, rendered = _render(state)
    return state, values, rendered


def _fake_helm_objects(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    path = ROOT / "tests/operator/fake_helm.py"
    spec = importlib.util.spec_from_file_location("fake_helm_for_charts", path)
    assert spec is not None and spec.loader is not None
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    objects: dict[str, dict[str, Any]] = module.FakeHelm("http://unused")._objects(NAME, values)
    return objects


def test_every_manifest_of_operator_values_passes_strict_validation(
    training: tuple[PhaseState, dict[str, Any], Rendered],
) -> None:
    _, values, rendered = training
    assert {k for k in values} == {
        "experiment",
        "spec",
        "phase",
        "active",
        "gpuResource",
        "services",
        "jobs",
        "persistence",
    }
    for obj in rendered.objects:
        kubernetes_validate.validate(obj, KUBERNETES, strict=True)
    assert len(rendered.of_kind("Job")) == len(values["jobs"]) == 5


def test_the_operator_finds_every_job_it_asked_for(
    training: tuple[PhaseState, dict[str, Any], Rendered],
) -> None:
    state, values, rendered = training
    wanted = {(j["stage"], j["unit"], j["attempt"]) for j in values["jobs"]}
    assert ("train-judges", "reasoning", 2) in wanted, "a retry is a new attempt"
    seen = set()
    for job in rendered.of_kind("Job"):
        labels = job["metadata"]["labels"]
        assert labels[EXPERIMENT_LABEL] == NAME
        observed = observe_job(job)
        assert observed is not None, job["metadata"]["name"]
        assert observed.outcome == "running"
        finished = {**job, "status": {"conditions": [{"type": "Complete", "status": "True"}]}}
        assert observe_job(finished).outcome == "succeeded"  # type: ignore[union-attr]
        pod_labels = job["spec"]["template"]["metadata"]["labels"]
        for key in (EXPERIMENT_LABEL, STAGE, UNIT, ATTEMPT):
            assert pod_labels[key] == labels[key], (job["metadata"]["name"], key)
        seen.add((observed.stage.value, observed.unit, observed.attempt))
    assert seen == wanted
    running = {
        (s.value, n)
        for s, units in state.units.items()
        for n, u in units.items()
        if u.status == "running"
    }
    assert running == {("train-policy", "plain"), ("train-policy", "reasoning")}


def test_the_operator_sees_every_service_become_ready(
    training: tuple[PhaseState, dict[str, Any], Rendered],
) -> None:
    _, values, rendered = training
    services = {}
    for deployment in rendered.of_kind("Deployment"):
        assert deployment["metadata"]["labels"][EXPERIMENT_LABEL] == NAME
        replicas = deployment["spec"]["replicas"]
        ready = {**deployment, "status": {"readyReplicas": replicas}}
        observed = observe_deployment(ready)
        assert observed is not None and observed.ready, deployment["metadata"]["name"]
        assert not observe_deployment(deployment).ready  # type: ignore[union-attr]
        services[observed.service] = replicas
    keys = {"annotator": "annotator", "judge-pool": "judgePool", "rollout": "rollout"}
    assert services == {s: values["services"][k]["replicas"] for s, k in keys.items()}
    assert set(services) == set(phases.SERVICES)


def test_the_fake_helm_of_the_operator_tests_renders_what_the_chart_renders(
    training: tuple[PhaseState, dict[str, Any], Rendered],
) -> None:
    _, values, rendered = training
    fake = _fake_helm_objects(values)
    chart = {
        f"{o['kind'].lower()}s/{o['metadata']['name']}": o
        for o in rendered.objects
        if o["kind"] in ("Deployment", "Job")
    }
    assert set(fake) == set(chart)
    for key, body in fake.items():
        labels = chart[key]["metadata"]["labels"]
        assert body["metadata"]["labels"].items() <= labels.items(), key


def test_policy_jobs_may_write_their_progress_annotation(
    training: tuple[PhaseState, dict[str, Any], Rendered],
) -> None:
    _, _, rendered = training
    policy = [
        j for j in rendered.of_kind("Job") if j["metadata"]["labels"][STAGE] == "train-policy"
    ]
    (role,) = rendered.of_kind("Role")
    (rule,) = role["rules"]
    assert sorted(rule["resourceNames"]) == sorted(j["metadata"]["name"] for j in policy)
    assert "patch" in rule["verbs"]
    for job in policy:
        (container,) = job["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["JUDGELAB_JOB_NAME"] == job["metadata"]["name"]
        assert env["JUDGELAB_PROGRESS_ANNOTATION"] == "judgelab.io/progress"


def test_the_mounted_experiment_is_the_accepted_spec(
    training: tuple[PhaseState, dict[str, Any], Rendered],
    tmp_path: Path,
) -> None:
    state, _, rendered = training
    mounted = tmp_path / "experiment.yaml"
    mounted.write_text(rendered.one("ConfigMap", "experiment")["data"]["experiment.yaml"])
    experiment = load_experiment(mounted)
    assert experiment.metadata.name == NAME
    assert phases.spec_dict(experiment.spec) == state.spec


def test_a_finished_study_keeps_jobs_and_volume_but_runs_no_service() -> None:
    state = phases.fail(_quickstart_training_policy(), "Test", "stopped", T0)
    values, rendered = _render(state)
    assert values["active"] is False
    assert rendered.of_kind("Deployment") == []
    assert {s["metadata"]["name"] for s in rendered.of_kind("Service")} == {f"{NAME}-learner"}
    assert len(rendered.of_kind("Job")) == len(values["jobs"]) == 5
    claim = rendered.one("PersistentVolumeClaim")
    assert claim["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    for obj in rendered.objects:
        kubernetes_validate.validate(obj, KUBERNETES, strict=True)


def test_deleting_the_data_drops_the_keep_annotation() -> None:
    _, rendered = _render(_quickstart_training_policy(), keep=False)
    claim = rendered.one("PersistentVolumeClaim")
    assert "helm.sh/resource-policy" not in claim["metadata"].get("annotations", {})
