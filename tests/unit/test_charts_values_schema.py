"""Values the charts' JSON schemas refuse, each with the field it names; see test_charts.py."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from charts_support import (
    CHARTS,
    EXPERIMENT,
    PLATFORM,
    install_dry_run,
    load_values,
)

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
