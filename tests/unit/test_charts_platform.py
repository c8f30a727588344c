"""The platform chart (CRD, operator, RBAC, Redis), rendered by real Helm; see test_charts.py."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from charts_support import (
    EXPERIMENT,
    NAMESPACE,
    PLATFORM,
    Rendered,
    load_values,
    pod_templates,
    render,
    scenarios,
    selects,
)


@pytest.fixture(scope="module")
def experiment_renders() -> dict[str, Rendered]:
    return {p.stem: render(EXPERIMENT, load_values(p)) for p in scenarios(EXPERIMENT)}


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
