"""The experiment chart's `security` values: TLS and token Secrets mounted into the services,
the CA and the Jobs' token into the Jobs, limits as environment, exec health probes with TLS.
Rendered with real Helm and validated strictly (kubernetes-validate); off, it renders as before."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from api_support import constant_pool, load_script, start_pool_server
from charts_support import (
    EXPERIMENT,
    ROOT,
    Rendered,
    containers,
    install_dry_run,
    lint,
    load_values,
    pod_templates,
    render,
)

from judgelab.serving.security import SecurityOptions

KUBERNETES = kubernetes_validate.latest_version()
CPU = load_values(EXPERIMENT / "ci/cpu-minimal-values.yaml")
SECURITY = {
    "tls": {"secretName": "judgelab-tls", "caKey": "ca.crt"},
    "tokensSecret": "judgelab-api-tokens",
    "clientToken": {"secretName": "quickstart-client-token", "key": "token"},
    "rateLimitPerSecond": 2.5,
    "rateLimitBurst": 10,
    "maxConcurrentPerClient": 4,
    "maxRequestBytes": 8388608,
}
SERVICE_ENV = {
    "JUDGELAB_TLS_CERT_FILE": "/etc/judgelab-tls/tls.crt",
    "JUDGELAB_TLS_KEY_FILE": "/etc/judgelab-tls/tls.key",
    "JUDGELAB_API_TOKENS": "/etc/judgelab-tokens",
    "JUDGELAB_RATE_LIMIT_PER_S": "2.5",
    "JUDGELAB_RATE_LIMIT_BURST": "10",
    "JUDGELAB_MAX_CONCURRENT_PER_CLIENT": "4",
    "JUDGELAB_MAX_REQUEST_BYTES": "8388608",
}
JOB_ENV = {
    "JUDGELAB_CLIENT_CA_FILE": "/etc/judgelab-tls/ca.crt",
    "JUDGELAB_CLIENT_TOKEN_FILE": "/etc/judgelab-client/token",
}


def _secured(security: dict[str, Any] = SECURITY) -> dict[str, Any]:
    values = copy.deepcopy(CPU)
    values["security"] = copy.deepcopy(security)
    return values


@pytest.fixture(scope="module")
def secured() -> Rendered:
    return render(EXPERIMENT, _secured())


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def _secret_files(pod: dict[str, Any], container: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Mounted path of every Secret file -> (Secret, key); a whole Secret maps its dir to '*'."""
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    files: dict[str, tuple[str, str]] = {}
    for mount in container.get("volumeMounts", []):
        secret = volumes[mount["name"]].get("secret")
        if secret is None:
            continue
        assert mount.get("readOnly") is True, mount
        items = secret.get("items")
        if items is None:
            files[mount["mountPath"]] = (secret["secretName"], "*")
        for item in items or []:
            files[f"{mount['mountPath']}/{item['path']}"] = (secret["secretName"], item["key"])
    return files


def _judgelab_container(pod: dict[str, Any]) -> dict[str, Any]:
    (container,) = [c for c in containers(pod) if c["name"] != "vllm"]
    return container


def test_secured_release_is_lint_clean_valid_and_installable(secured: Rendered) -> None:
    values = _secured()
    assert lint(EXPERIMENT, values) == []
    for obj in secured.objects:
        kubernetes_validate.validate(obj, KUBERNETES, strict=True)
    installed = [o for o in yaml.safe_load_all(install_dry_run(EXPERIMENT, values)) if o]
    assert {o["kind"] for o in installed} >= {"Deployment", "Job", "Service"}


def test_services_serve_tls_with_tokens_and_limits_from_mounted_secrets(
    secured: Rendered,
) -> None:
    deployments = secured.of_kind("Deployment")
    assert len(deployments) == 3
    for deployment in deployments:
        pod = deployment["spec"]["template"]
        container = _judgelab_container(pod)
        env = _env(container)
        assert {k: env.get(k) for k in SERVICE_ENV} == SERVICE_ENV
        assert not any(k.startswith("JUDGELAB_CLIENT_") for k in env)
        files = _secret_files(pod, container)
        assert files == {
            "/etc/judgelab-tls": ("judgelab-tls", "*"),
            "/etc/judgelab-tokens": ("judgelab-api-tokens", "*"),
        }


def test_jobs_get_the_ca_and_their_token_but_never_the_server_key(secured: Rendered) -> None:
    jobs = secured.of_kind("Job")
    assert {j["metadata"]["labels"]["judgelab.io/stage"] for j in jobs} >= {
        "annotate",
        "train-judges",
        "train-policy",
    }
    for job in jobs:
        pod = job["spec"]["template"]
        container = _judgelab_container(pod)
        env = _env(container)
        assert {k: env.get(k) for k in JOB_ENV} == JOB_ENV, job["metadata"]["name"]
        assert not any(k.startswith(("JUDGELAB_TLS_", "JUDGELAB_API_")) for k in env)
        assert _secret_files(pod, container) == {
            "/etc/judgelab-tls/ca.crt": ("judgelab-tls", "ca.crt"),
            "/etc/judgelab-client/token": ("quickstart-client-token", "token"),
        }


def test_every_secret_path_in_the_environment_is_mounted(secured: Rendered) -> None:
    for name, pod in pod_templates(secured):
        for container in containers(pod):
            files = _secret_files(pod, container)
            for variable, value in _env(container).items():
                if not value.startswith(
                    ("/etc/judgelab-tls", "/etc/judgelab-to", "/etc/judgelab-c")
                ):
                    continue
                assert value in files or str(Path(value).parent) in files, (name, variable)


def test_probes_exec_the_tls_health_check_and_services_drop_h2c(secured: Rendered) -> None:
    for deployment in secured.of_kind("Deployment"):
        name = deployment["metadata"]["name"]
        container = _judgelab_container(deployment["spec"]["template"])
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            check = container[probe]
            assert "grpc" not in check
            assert check["exec"]["command"] == [
                "python3",
                "-m",
                "judgelab.client.health",
                "127.0.0.1:50051",
                "--timeout=5",
                f"--server-name={name}",
                "--ca-file=/etc/judgelab-tls/ca.crt",
            ]
            assert check["timeoutSeconds"] == 10
    for service in secured.of_kind("Service"):
        for port in service["spec"]["ports"]:
            assert port.get("appProtocol") != "kubernetes.io/h2c", service["metadata"]["name"]


def test_helm_test_checks_health_over_tls_with_the_ca_only(secured: Rendered) -> None:
    pod = secured.one("Pod", "test-health")
    (container,) = pod["spec"]["containers"]
    assert "from judgelab.client.health import main" in container["command"][2]
    assert _env(container)["JUDGELAB_CLIENT_CA_FILE"] == "/etc/judgelab-tls/ca.crt"
    assert _secret_files(pod, container) == {"/etc/judgelab-tls/ca.crt": ("judgelab-tls", "ca.crt")}


def test_rendered_probe_command_passes_against_a_tls_server_with_tokens(
    secured: Rendered, tmp_path: Path
) -> None:
    """The exact probe the chart renders, pointed at a local TLS + token server."""
    pki = load_script("dev_certs").make_dev_pki(tmp_path / "pki", clients=[])
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text("team-a: token-of-team-a-0123456789\n")
    deployment = secured.one("Deployment", "judge-pool")
    command = _judgelab_container(deployment["spec"]["template"])["readinessProbe"]["exec"]
    pool = constant_pool()
    server = start_pool_server(
        pool, SecurityOptions(tls_cert=pki.server_cert, tls_key=pki.server_key, tokens=tokens)
    )
    try:
        argv = [sys.executable if a == "python3" else a for a in command["command"]]
        argv = [
            server.address
            if a == "127.0.0.1:50051"
            else a.replace("/etc/judgelab-tls", str(pki.directory))
            for a in argv
        ]
        argv = [a.replace("ca.crt", "ca.pem") for a in argv]
        wrong_name = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert wrong_name.returncode == 1  # the dev certificate does not name the Service
        argv = [
            a if not a.startswith("--server-name=") else "--server-name=localhost" for a in argv
        ]
        passed = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert passed.returncode == 0, passed.stderr
    finally:
        server.stop(0)
        pool.close()


def test_tls_without_a_ca_key_verifies_with_the_system_roots() -> None:
    rendered = render(
        EXPERIMENT,
        _secured(
            {"tls": {"secretName": "public-tls", "caKey": "", "serverName": "jl.example.org"}}
        ),
    )
    job = rendered.of_kind("Job")[0]
    container = _judgelab_container(job["spec"]["template"])
    env = _env(container)
    assert env["JUDGELAB_CLIENT_TLS"] == "1"
    assert env["JUDGELAB_CLIENT_SERVER_NAME"] == "jl.example.org"
    assert "JUDGELAB_CLIENT_CA_FILE" not in env and "JUDGELAB_CLIENT_TOKEN_FILE" not in env
    assert _secret_files(job["spec"]["template"], container) == {}
    probe = _judgelab_container(rendered.one("Deployment", "judge-pool")["spec"]["template"])
    command = probe["livenessProbe"]["exec"]["command"]
    assert "--server-name=jl.example.org" in command
    assert not any(a.startswith("--ca-file") for a in command)


def test_tokens_without_a_client_token_for_the_jobs_are_refused() -> None:
    values = _secured({"tokensSecret": "judgelab-api-tokens"})
    with pytest.raises(helm.HelmError, match="security.clientToken.secretName"):
        render(EXPERIMENT, values)
    values["jobs"] = []  # no Jobs: nothing would call without a token
    assert render(EXPERIMENT, values).of_kind("Deployment")


@pytest.mark.parametrize(
    ("security", "field"),
    [
        ({"maxRequestBytes": 100}, "/security/maxRequestBytes"),
        ({"rateLimitPerSecond": -1}, "/security/rateLimitPerSecond"),
        ({"tls": {"secretName": "Not A Name"}}, "/security/tls/secretName"),
        ({"tokens": "typo"}, "tokens"),
    ],
)
def test_schema_rejects_bad_security_values(security: dict[str, Any], field: str) -> None:
    with pytest.raises(helm.HelmError) as refused:
        install_dry_run(EXPERIMENT, _secured(security), release="quickstart")
    assert "schema" in str(refused.value) and field in str(refused.value), str(refused.value)


def test_security_off_renders_nothing_of_it() -> None:
    """The defaults spelled out render exactly what leaving `security` out renders."""
    defaults = yaml.safe_load((EXPERIMENT / "values.yaml").read_text())["security"]
    plain, spelled = render(EXPERIMENT, CPU), render(EXPERIMENT, _secured(defaults))
    assert plain.objects == spelled.objects
    text = yaml.safe_dump_all(plain.objects)
    for marker in ("judgelab-tls", "judgelab-tokens", "JUDGELAB_TLS", "JUDGELAB_CLIENT", "exec:"):
        assert marker not in text
    for deployment in plain.of_kind("Deployment"):
        assert _judgelab_container(deployment["spec"]["template"])["readinessProbe"]["grpc"]
