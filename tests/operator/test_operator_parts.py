"""The operator's pure parts: chart values, Job/Deployment reading, the Helm CLI, config."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from judgelab import phases
from judgelab.phases import PhaseState, RetryPolicy, Stage
from judgelab.spec import validate_mapping
from judgelab_operator.config import OperatorConfig
from judgelab_operator.helm import HelmCli
from judgelab_operator.labels import ATTEMPT, COMPONENT, PROGRESS_ANNOTATION, STAGE, UNIT
from judgelab_operator.observations import (
    DeploymentObservation,
    observe_deployment,
    observe_job,
)
from judgelab_operator.reconcile import launch_runnable, observe
from judgelab_operator.releases import ReleaseError
from judgelab_operator.spec_input import keep_data, parse_experiment
from judgelab_operator.values import chart_values, release_name, values_digest

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _raw() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "examples/quickstart.yaml").read_text("utf-8"))
    return loaded


def _state(raw: dict[str, Any] | None = None) -> PhaseState:
    return phases.start(validate_mapping(raw or _raw()).spec, T0, generation=1)


def _job(stage: str, unit: str, attempt: int, **status: Any) -> dict[str, Any]:
    labels = {STAGE: stage, UNIT: unit, ATTEMPT: str(attempt)}
    return {"metadata": {"name": f"j-{unit}-{attempt}", "labels": labels}, "status": status}


# --- values ------------------------------------------------------------------------------------


def test_chart_values_follow_the_spec_and_the_state() -> None:
    raw = _raw()
    raw["spec"]["resources"] = {"judge_pool": {"replicas": 2, "cpu": "500m", "gpus": 1}}
    state = _state(raw)
    state = phases.set_service(state, "annotator", True, T0)
    state = launch_runnable(state, T0)
    values = chart_values(release_name("quickstart"), state, keep_data=True)
    assert values["experiment"] == {"name": "quickstart"}
    assert values["phase"] == "Annotating" and values["active"] is True
    assert values["services"]["judgePool"] == {"replicas": 2, "gpus": 1, "cpu": "500m"}
    assert values["services"]["rollout"] == {"replicas": 1, "gpus": 0}
    assert values["jobs"] == [{"stage": "annotate", "unit": "gold", "attempt": 1}]
    assert values["persistence"] == {"keep": True}
    assert values["spec"]["gold"]["model"]["name"] == "builtin:smollm2-135m-instruct"
    assert values["gpuResource"] == "nvidia.com/gpu"
    json.dumps(values)  # plain JSON, as Helm receives it


def test_values_digest_changes_only_with_the_values() -> None:
    state = _state()
    assert values_digest(chart_values("a", state, True)) == values_digest(
        chart_values("a", state, True)
    )
    assert values_digest(chart_values("a", state, True)) != values_digest(
        chart_values("a", state, False)
    )


def test_a_finished_study_renders_no_services_but_keeps_its_jobs() -> None:
    state = phases.fail(
        launch_runnable(phases.set_service(_state(), "annotator", True, T0), T0),
        "AttemptsExhausted",
        "x",
        T0,
    )
    values = chart_values("a", state, True)
    assert values["active"] is False and values["jobs"] == [
        {"stage": "annotate", "unit": "gold", "attempt": 1}
    ]


# --- observations ------------------------------------------------------------------------------


def test_job_outcomes_are_read_from_the_job_conditions() -> None:
    running = observe_job(_job("annotate", "gold", 1))
    assert running is not None and running.outcome == "running"
    done = observe_job(
        _job("annotate", "gold", 1, conditions=[{"type": "Complete", "status": "True"}])
    )
    assert done is not None and done.outcome == "succeeded"
    failed_condition = {
        "type": "Failed",
        "status": "True",
        "reason": "DeadlineExceeded",
        "message": "Job was active longer than specified deadline",
    }
    failed = observe_job(_job("train-judges", "plain", 2, conditions=[failed_condition]))
    assert failed is not None and (failed.stage, failed.attempt) == (Stage.TRAIN_JUDGES, 2)
    assert failed.detail == (
        "Job j-plain-2 failed: DeadlineExceeded: Job was active longer than specified deadline"
    )
    assert observe_job(_job("deploy", "gold", 1)) is None, "unknown stage"
    assert observe_job({"metadata": {"name": "x", "labels": {STAGE: "annotate"}}}) is None


def test_arm_progress_is_read_from_the_learner_annotation() -> None:
    body = _job("train-policy", "plain", 1)
    body["metadata"]["annotations"] = {
        PROGRESS_ANNOTATION: json.dumps({"step": 5, "proxyReward": 0.5, "kl": "NaN"})
    }
    seen = observe_job(body)
    assert seen is not None and seen.progress is not None
    assert (seen.progress.step, seen.progress.proxy_reward, seen.progress.kl) == (5, 0.5, None)
    body["metadata"]["annotations"] = {PROGRESS_ANNOTATION: "not json"}
    broken = observe_job(body)
    assert broken is not None and broken.progress is None


def test_a_deployment_is_ready_when_all_replicas_of_its_current_generation_are() -> None:
    def deployment(ready: int, generation: int = 1, observed: int = 1) -> dict[str, Any]:
        return {
            "metadata": {
                "name": "d",
                "labels": {COMPONENT: "rollout-generator"},
                "generation": generation,
            },
            "spec": {"replicas": 2},
            "status": {"readyReplicas": ready, "observedGeneration": observed},
        }

    assert observe_deployment(deployment(2)).ready  # type: ignore[union-attr]
    assert not observe_deployment(deployment(1)).ready  # type: ignore[union-attr]
    assert not observe_deployment(deployment(2, generation=2)).ready  # type: ignore[union-attr]
    other = {"metadata": {"name": "x", "labels": {COMPONENT: "redis"}}}
    assert observe_deployment(other) is None


def test_only_the_current_attempt_of_a_running_unit_moves_the_state() -> None:
    policy = RetryPolicy(max_attempts=3, initial_delay_s=0)
    state = launch_runnable(phases.set_service(_state(), "annotator", True, T0), T0)
    failed = {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}
    seen = observe_job(_job("annotate", "gold", 1, conditions=[failed]))
    assert seen is not None
    annotator = [DeploymentObservation("a", "annotator", True)]
    state = observe(state, [seen], annotator, T0, policy)
    assert state.unit(Stage.ANNOTATE, "gold").status == "retrying"
    again = observe(state, [seen], annotator, T0, policy)
    assert again.unit(Stage.ANNOTATE, "gold").failures == 1, "the same failure counts once"
    state = launch_runnable(again, T0)
    assert state.unit(Stage.ANNOTATE, "gold").attempts == 2
    stale = observe(state, [seen], annotator, T0, policy)
    assert stale.unit(Stage.ANNOTATE, "gold").status == "running", "attempt 1 is history"


# --- helm --------------------------------------------------------------------------------------


def _fake_helm(tmp_path: Path, exit_code: int = 0, stderr: str = "", stdout: str = "") -> Path:
    script = tmp_path / "helm"
    (tmp_path / "out").write_text(stdout)
    (tmp_path / "err").write_text(stderr)
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> "{tmp_path}/argv"\n'
        f'cat > "{tmp_path}/stdin"\n'
        f'cat "{tmp_path}/out"\n'
        f'cat "{tmp_path}/err" >&2\n'
        f"exit {exit_code}\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_helm_install_passes_values_on_stdin_and_reads_the_release(tmp_path: Path) -> None:
    out = json.dumps({"info": {"status": "deployed"}, "version": 3})
    helm = HelmCli("/charts/judgelab-experiment", helm=str(_fake_helm(tmp_path, stdout=out)))
    info = helm.install("q", "studies", {"phase": "Annotating"})
    assert (info.name, info.namespace, info.status, info.revision) == (
        "q",
        "studies",
        "deployed",
        3,
    )
    argv = (tmp_path / "argv").read_text().split()
    assert argv == [
        "install",
        "q",
        "/charts/judgelab-experiment",
        "-n",
        "studies",
        "-f",
        "-",
        "-o",
        "json",
    ]
    assert json.loads((tmp_path / "stdin").read_text()) == {"phase": "Annotating"}


def test_base_values_files_come_before_the_operators_values(tmp_path: Path) -> None:
    out = json.dumps({"info": {"status": "deployed"}, "version": 1})
    script = str(_fake_helm(tmp_path, stdout=out))
    helm = HelmCli("c", helm=script, base_values=("/etc/a.yaml", "/etc/b.yaml"))
    helm.upgrade("q", "studies", {})
    argv = (tmp_path / "argv").read_text().split()
    assert argv[5:11] == ["-f", "/etc/a.yaml", "-f", "/etc/b.yaml", "-f", "-"], "later -f wins"


@pytest.mark.parametrize(
    ("stderr", "transient"),
    [
        (
            "Error: UPGRADE FAILED: another operation (install/upgrade/rollback) is in progress",
            True,
        ),
        ("Error: Kubernetes cluster unreachable: dial tcp 10.0.0.1:443: i/o timeout", True),
        ("Error: values don't meet the specifications of the schema(s)", False),
    ],
)
def test_helm_errors_are_classified(tmp_path: Path, stderr: str, transient: bool) -> None:
    helm = HelmCli("c", helm=str(_fake_helm(tmp_path, exit_code=1, stderr=stderr)))
    with pytest.raises(ReleaseError) as caught:
        helm.upgrade("q", "studies", {})
    assert caught.value.transient is transient and stderr in str(caught.value)


def test_a_missing_release_is_none_and_uninstalling_it_is_fine(tmp_path: Path) -> None:
    helm = HelmCli("c", helm=str(_fake_helm(tmp_path, 1, "Error: release: not found")))
    assert helm.status("q", "studies") is None
    helm.uninstall("q", "studies")
    assert (tmp_path / "argv").read_text().splitlines() == [
        "status q -n studies -o json",
        "uninstall q -n studies",
    ]


def test_a_missing_helm_binary_is_a_permanent_error(tmp_path: Path) -> None:
    with pytest.raises(ReleaseError) as caught:
        HelmCli("c", helm=str(tmp_path / "no-helm")).status("q", "studies")
    assert not caught.value.transient


# --- config and the Experiment object ----------------------------------------------------------


def test_config_from_the_environment() -> None:
    env = {
        "JUDGELAB_NAMESPACES": "a, b",
        "JUDGELAB_RETRY_ATTEMPTS": "5",
        "JUDGELAB_RECONCILE_INTERVAL_S": "2",
        "JUDGELAB_PEERING": "",
        "JUDGELAB_BASE_VALUES": "/etc/judgelab-operator/experiment-values.yaml",
    }
    config = OperatorConfig.from_env(env)
    assert config.namespaces == ("a", "b") and not config.clusterwide
    assert (config.retry.max_attempts, config.reconcile_interval_s, config.peering) == (5, 2.0, "")
    assert config.base_values == ("/etc/judgelab-operator/experiment-values.yaml",)
    assert OperatorConfig.from_env({}).clusterwide
    assert OperatorConfig.from_env({}).peering == "judgelab"
    assert os.environ is not env


def test_problems_of_an_invalid_experiment_name_the_field() -> None:
    raw = _raw()
    raw["spec"]["arms"] = [{"name": "x", "judge": "nobody"}]
    experiment, problems = parse_experiment(raw)
    assert experiment is None
    assert any(p.startswith("spec.arms[0].judge: ") for p in problems), problems


def test_data_is_kept_unless_the_experiment_opts_out() -> None:
    assert keep_data({"metadata": {}})
    assert not keep_data({"metadata": {"annotations": {"judgelab.io/delete-data": "true"}}})
