"""The experiment chart (services, learner Jobs, vLLM, volumes), rendered by real Helm; see
test_charts.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from charts_support import (
    EXPERIMENT,
    Rendered,
    load_values,
    pod_templates,
    render,
    scenarios,
    selects,
)

from judgelab.spec import load_experiment

KUBERNETES = kubernetes_validate.latest_version()


@pytest.fixture(scope="module")
def experiment_renders() -> dict[str, Rendered]:
    return {p.stem: render(EXPERIMENT, load_values(p)) for p in scenarios(EXPERIMENT)}


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
    assert "--stage=train-policy" in command and "--feed-prompts" in command
    for other in rendered.of_kind("Job"):  # only the policy learner feeds prompts
        other_command = other["spec"]["template"]["spec"]["containers"][0]["command"]
        feeds = "--feed-prompts" in other_command
        assert feeds == ("--stage=train-policy" in other_command), other["metadata"]["name"]
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
