"""The operator run for real by kopf against kmock: phases, retries, spec changes, deletion."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from operator_support import Cluster, eventually, quickstart
from unit.test_crd import _violations

from judgelab.crd import openapi_schema
from judgelab.phases import PhaseState, Stage
from judgelab.spec.status import ExperimentStatus
from judgelab_operator.labels import DELETE_DATA_ANNOTATION, STATE_ANNOTATION
from judgelab_operator.releases import ReleaseError

pytestmark = [pytest.mark.asyncio, pytest.mark.operator, pytest.mark.timeout(60)]


def _phase(cluster: Cluster, name: str, phase: str) -> Any:
    return lambda: cluster.status(name).get("phase") == phase


async def _start(cluster: Cluster, name: str, body: dict[str, Any] | None = None) -> None:
    created = await cluster.create(body or quickstart(name))
    assert created["_code"] == 200, created
    await eventually(_phase(cluster, name, "Annotating"), f"{name} Annotating")


async def _run_stage(cluster: Cluster, name: str, stage: str, units: list[str]) -> None:
    for unit in units:
        job = await eventually(lambda u=unit: cluster.job(name, stage, u), f"{stage}/{unit} Job")
        await cluster.finish_job(job)


async def test_a_study_advances_as_jobs_complete_and_services_become_ready(
    cluster: Cluster,
) -> None:
    name = "happy"
    await _start(cluster, name)
    assert cluster.helm.verbs()[:2] == ["status", "install"]
    assert cluster.condition(name, "ServicesReady")["status"] == "False"
    assert cluster.job(name, "annotate", "gold") is None, "waits for the annotator"

    await cluster.set_ready(name, "annotator")
    await _run_stage(cluster, name, "annotate", ["gold"])
    await eventually(_phase(cluster, name, "TrainingJudges"), "TrainingJudges")
    await _run_stage(cluster, name, "train-judges", ["plain", "reasoning"])
    await eventually(_phase(cluster, name, "TrainingPolicy"), "TrainingPolicy")
    assert cluster.job(name, "train-policy", "plain") is None, "waits for judge pool + rollout"

    await cluster.set_ready(name, "judge-pool")
    await cluster.set_ready(name, "rollout")
    plain = await eventually(lambda: cluster.job(name, "train-policy", "plain"), "plain arm")
    progress = {"step": 8, "proxyReward": 0.9, "goldReward": 0.3, "kl": 0.2, "hacking": True}
    await cluster.finish_job(plain, **{"judgelab.io/progress": json.dumps(progress)})
    await _run_stage(cluster, name, "train-policy", ["reasoning"])
    await eventually(_phase(cluster, name, "Evaluating"), "Evaluating")
    await _run_stage(cluster, name, "evaluate", ["report"])
    await eventually(_phase(cluster, name, "Succeeded"), "Succeeded")

    status = cluster.status(name)
    assert _violations(openapi_schema()["properties"]["status"], status, ".status") == []
    assert ExperimentStatus.model_validate(status).phase == "Succeeded"
    assert cluster.condition(name, "Ready")["status"] == "True"
    for type_ in ("Annotated", "JudgesTrained", "PolicyTrained", "Evaluated", "ReleaseReady"):
        assert cluster.condition(name, type_)["status"] == "True", type_
    arms = {a["name"]: a for a in status["arms"]}
    assert arms["plain"] == {"name": "plain", "judge": "plain", **progress}
    assert (status["hacking"], status["step"], status["observedGeneration"]) == ("plain", 0, 1)

    await eventually(lambda: "StudySucceeded" in cluster.reasons(name), "the last Event")
    reasons = cluster.reasons(name)
    for reason in (
        "ReleaseInstalled",
        "StudyStarted",
        "StageStarted",
        "UnitLaunched",
        "UnitSucceeded",
        "StageSucceeded",
        "StudySucceeded",
    ):
        assert reason in reasons, reason
    assert reasons.count("UnitLaunched") == 6, "every unit launched exactly once"

    saved = cluster.experiment(name)["metadata"]["annotations"][STATE_ANNOTATION]  # type: ignore[index]
    state = PhaseState.from_dict(json.loads(saved))
    assert state.phase == "Succeeded" and state.launched(Stage.ANNOTATE, "gold") == 1
    await eventually(lambda: not cluster.objects("apps/v1/deployments"), "services scaled away")
    assert cluster.helm.last_values()["active"] is False

    deleted = await cluster.delete(name)
    assert deleted["_code"] == 200
    await eventually(lambda: cluster.experiment(name) is None, "finalizer released")
    assert cluster.helm.verbs()[-1] == "uninstall"
    assert cluster.helm.last_values()["persistence"] == {"keep": True}
    await eventually(lambda: "ReleaseUninstalled" in cluster.reasons(name), "uninstall Event")


async def test_a_failing_job_is_retried_then_the_study_fails_with_the_reason(
    cluster: Cluster,
) -> None:
    name = "flaky"
    await _start(cluster, name)
    await cluster.set_ready(name, "annotator")
    first = await eventually(lambda: cluster.job(name, "annotate", "gold", 1), "attempt 1")
    await cluster.finish_job(first, failed=True)
    second = await eventually(lambda: cluster.job(name, "annotate", "gold", 2), "attempt 2")
    await eventually(lambda: cluster.job(name, "annotate", "gold", 1) is None, "1 replaced")
    assert cluster.condition(name, "Annotated")["reason"] == "Retrying"

    await cluster.finish_job(second, failed=True)
    await eventually(_phase(cluster, name, "Failed"), "Failed")
    ready = cluster.condition(name, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "AttemptsExhausted")
    assert "annotate/gold failed 2 of 2 attempts" in ready["message"]
    assert "BackoffLimitExceeded" in ready["message"]
    await eventually(lambda: "StudyFailed" in cluster.reasons(name, "Warning"), "Event")
    assert "UnitRetrying" in cluster.reasons(name, "Warning")
    await eventually(lambda: cluster.helm.last_values()["active"] is False, "scaled down")


async def test_transient_helm_errors_are_retried_with_back_off(cluster: Cluster) -> None:
    cluster.helm.fail_next(ReleaseError("helm install x: connection refused", transient=True))
    await _start(cluster, "patient")
    await eventually(
        lambda: cluster.condition("patient", "ReleaseReady").get("status") == "True",
        "installed on the second attempt",
    )
    assert cluster.helm.verbs().count("install") == 2
    await eventually(lambda: "ReleaseRetrying" in cluster.reasons("patient", "Warning"), "Event")


async def test_helm_errors_past_the_budget_fail_the_study(cluster: Cluster) -> None:
    errors = [ReleaseError("helm install x: i/o timeout", transient=True) for _ in range(2)]
    cluster.helm.fail_next(*errors)
    created = await cluster.create(quickstart("doomed"))
    assert created["_code"] == 200
    await eventually(_phase(cluster, "doomed", "Failed"), "Failed")
    ready = cluster.condition("doomed", "Ready")
    assert ready["reason"] == "ReleaseFailed" and "i/o timeout" in ready["message"]
    assert cluster.condition("doomed", "ReleaseReady")["reason"] == "ReleaseFailed"


async def test_a_permanent_helm_error_fails_at_once(cluster: Cluster) -> None:
    cluster.helm.fail_next(ReleaseError("helm install x: values don't meet the schema", False))
    await cluster.create(quickstart("broken"))
    await eventually(_phase(cluster, "broken", "Failed"), "Failed")
    assert cluster.helm.verbs().count("install") == 1
    assert "values don't meet" in cluster.condition("broken", "Ready")["message"]


async def test_spec_changes_roll_out_unless_a_started_phase_read_them(cluster: Cluster) -> None:
    name = "edited"
    await _start(cluster, name)
    await cluster.set_ready(name, "annotator")
    await _run_stage(cluster, name, "annotate", ["gold"])
    await eventually(_phase(cluster, name, "TrainingJudges"), "TrainingJudges")

    await cluster.patch_experiment(name, {"spec": {"resources": {"rollout": {"replicas": 3}}}})
    await eventually(
        lambda: (
            cluster.objects("apps/v1/deployments")[f"{name}-rollout-generator"]["spec"]["replicas"]
            == 3
        ),
        "rollout scaled to 3",
    )
    await eventually(lambda: cluster.status(name)["observedGeneration"] == 2, "generation 2")
    assert cluster.condition(name, "SpecAccepted")["status"] == "True"

    await cluster.patch_experiment(name, {"spec": {"gold": {"temperature": 0.5}}})
    await eventually(
        lambda: cluster.condition(name, "SpecAccepted")["status"] == "False", "refused"
    )
    refused = cluster.condition(name, "SpecAccepted")
    assert refused["reason"] == "FrozenFieldChanged"
    assert "spec.gold.temperature is an input of Annotating" in refused["message"]
    assert cluster.status(name)["observedGeneration"] == 3
    assert cluster.helm.last_values()["spec"]["gold"]["temperature"] == 0.0
    await eventually(lambda: "SpecRefused" in cluster.reasons(name, "Warning"), "Event")

    await _run_stage(cluster, name, "train-judges", ["plain", "reasoning"])
    await eventually(_phase(cluster, name, "TrainingPolicy"), "the study goes on")


async def test_an_invalid_experiment_is_rejected_with_a_clear_condition(cluster: Cluster) -> None:
    body = quickstart("mislabelled")
    body["spec"]["arms"] = [{"name": "lonely", "judge": "nobody"}]
    created = await cluster.create(body)
    assert created["_code"] == 200, "the CRD schema cannot see this; the operator must"
    await eventually(_phase(cluster, "mislabelled", "Failed"), "rejected")
    accepted = cluster.condition("mislabelled", "SpecAccepted")
    assert (accepted["status"], accepted["reason"]) == ("False", "InvalidSpec")
    assert "spec.arms[0].judge" in accepted["message"]
    assert "must name a judge in spec.judges (plain, reasoning)" in accepted["message"]
    assert "install" not in cluster.helm.verbs()
    await eventually(lambda: "InvalidSpec" in cluster.reasons("mislabelled", "Warning"), "Event")

    await cluster.patch_experiment("mislabelled", {"spec": {"arms": None}})
    await eventually(_phase(cluster, "mislabelled", "Annotating"), "fixed spec starts")
    assert "install" in cluster.helm.verbs()


async def test_deleting_with_the_delete_data_opt_in_drops_the_keep_policy_first(
    cluster: Cluster,
) -> None:
    await _start(cluster, "scratch")
    annotations = {"metadata": {"annotations": {DELETE_DATA_ANNOTATION: "true"}}}
    await cluster.patch_experiment("scratch", annotations)
    await cluster.delete("scratch")
    await eventually(lambda: cluster.experiment("scratch") is None, "deleted")
    verbs = cluster.helm.verbs()
    assert verbs[-1] == "uninstall"
    assert cluster.helm.last_values()["persistence"] == {"keep": False}
    await eventually(lambda: "ReleaseUninstalled" in cluster.reasons("scratch"), "Event")
    messages = [
        e["message"] for e in cluster.events("scratch") if e["reason"] == "ReleaseUninstalled"
    ]
    assert messages == ["release scratch uninstalled; checkpoints and results deleted"]


async def test_liveness_endpoint_reports_the_probes(cluster: Cluster) -> None:
    await _start(cluster, "probed")
    async with aiohttp.ClientSession() as http, http.get(cluster.liveness) as response:
        assert response.status == 200
        assert (await response.json())["experiments"] >= 1
