"""The experiment chart passes the stream settings (claim timeout, Redis wait) to `judgelab serve`
only when set; see test_charts.py for the rendering."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from charts_support import EXPERIMENT, load_values, render

CPU = load_values(EXPERIMENT / "ci/cpu-minimal-values.yaml")
QUEUE_FLAGS = ("--claim-idle-ms", "--redis-wait-s")


def _commands(values: dict[str, Any]) -> dict[str, list[str]]:
    rendered = render(EXPERIMENT, values)
    return {
        d["metadata"]["labels"]["app.kubernetes.io/component"]: d["spec"]["template"]["spec"][
            "containers"
        ][0]["command"]
        for d in rendered.of_kind("Deployment")
    }


def _queue_flags(command: list[str]) -> list[str]:
    return [arg for arg in command if arg.startswith(QUEUE_FLAGS)]


def test_unset_values_leave_the_spec_in_charge() -> None:
    commands = _commands(CPU)
    assert set(commands) >= {"judge-pool", "gold-annotator", "rollout-generator"}
    assert all(_queue_flags(command) == [] for command in commands.values())


def test_set_values_become_flags_of_each_service() -> None:
    values = copy.deepcopy(CPU)
    values.setdefault("judgePool", {})["claimIdleMs"] = 120_000
    values.setdefault("rolloutGenerator", {})["claimIdleMs"] = 1_800_000
    values.setdefault("redis", {})["waitSeconds"] = 90
    commands = _commands(values)
    # Helm reads numbers as floats: 1800000 must not come out as 1.8e+06.
    assert _queue_flags(commands["judge-pool"]) == ["--claim-idle-ms=120000", "--redis-wait-s=90"]
    assert _queue_flags(commands["rollout-generator"]) == [
        "--claim-idle-ms=1800000",
        "--redis-wait-s=90",
    ]
    assert _queue_flags(commands["gold-annotator"]) == ["--redis-wait-s=90"]


@pytest.mark.parametrize("claim_idle_ms", [50, -1, 1.5])
def test_schema_refuses_a_claim_timeout_that_would_steal_live_work(claim_idle_ms: float) -> None:
    import helm_python as helm

    values = copy.deepcopy(CPU)
    values.setdefault("judgePool", {})["claimIdleMs"] = claim_idle_ms
    with pytest.raises(helm.HelmError, match="claimIdleMs"):
        render(EXPERIMENT, values)
