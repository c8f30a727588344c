"""Observability the platform chart ships: ServiceMonitor, alert rules, Grafana dashboard.

The alert rules are the PrometheusRule Helm renders, run through `promtool check rules` and
`promtool test rules`; the dashboard is generated with Grafana's typed builders
(grafana-foundation-sdk) and must match its generator; every metric either of them reads is
one a judgelab service really exports, scraped from a judge pool started in this process.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from charts_support import (
    EXPERIMENT,
    PLATFORM,
    Rendered,
    dashboard_exprs,
    exported_names,
    load_values,
    metric_names,
    render,
    scenarios,
    scrape,
    selects,
    without_grafana_variables,
)
from judge_pool_support import constant_pool, running, score_request

from judgelab.serving.metrics import ServiceMetrics

# The learner's gauges the dashboard and alerts read (labels experiment, arm); the learner's own
# registry is checked to export them below.
LEARNER_METRICS = {
    "judgelab_learner_proxy_reward",
    "judgelab_learner_gold_reward",
    "judgelab_learner_kl",
    "judgelab_hacking_gap",
    "judgelab_hacking_detected",
}
# Series that come from outside judgelab.
FOREIGN_METRICS = {
    "up": "Prometheus, per scrape target",
    "DCGM_FI_DEV_GPU_UTIL": "NVIDIA DCGM exporter",
    "DCGM_FI_DEV_FB_USED": "NVIDIA DCGM exporter",
}
DASHBOARD = PLATFORM / "dashboards/judgelab.json"
MONITORING = load_values(PLATFORM / "ci/monitoring-values.yaml")


@pytest.fixture(scope="module")
def experiment_renders() -> dict[str, Rendered]:
    return {p.stem: render(EXPERIMENT, load_values(p)) for p in scenarios(EXPERIMENT)}


@pytest.fixture(scope="module")
def service_metric_names() -> set[str]:
    """Names a judge pool started here exports on /metrics, after answering one request."""
    metrics = ServiceMetrics("judge-pool", experiment="charts")
    port = metrics.serve_http(0)
    with running(constant_pool(metrics=metrics)) as served:
        assert served.stub.Score(score_request(), timeout=10).scores
        names = exported_names(scrape(port))
    assert "judgelab_requests_total" in names and "judgelab_request_seconds_bucket" in names
    return names


def _rules(values: dict[str, Any]) -> dict[str, Any]:
    rule = render(PLATFORM, values).one("PrometheusRule")
    return {"groups": rule["spec"]["groups"]}


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail("promtool is missing: apt-get install prometheus (scripts/install.sh)")
    return subprocess.run([tool, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


# --- ServiceMonitor ------------------------------------------------------------------------------


def test_monitoring_objects_are_behind_flags() -> None:
    kinds = {o["kind"] for o in render(PLATFORM, {}).objects}
    assert not kinds & {"ServiceMonitor", "PrometheusRule"}
    kinds = {o["kind"] for o in render(PLATFORM, MONITORING).objects}
    assert {"ServiceMonitor", "PrometheusRule"} <= kinds


def test_service_monitor_scrapes_every_experiment_service(
    experiment_renders: dict[str, Rendered],
) -> None:
    monitor = render(PLATFORM, MONITORING).one("ServiceMonitor")
    spec = monitor["spec"]
    assert set(spec) == {"jobLabel", "namespaceSelector", "selector", "endpoints"}
    assert spec["namespaceSelector"] == {"any": True}
    (endpoint,) = spec["endpoints"]
    assert endpoint["honorLabels"] is True, "the services' own `service` label must survive"
    assert set(endpoint) == {"port", "path", "interval", "scrapeTimeout", "honorLabels"}
    jobs = set()
    for rendered in experiment_renders.values():
        for service in rendered.of_kind("Service"):
            if selects(spec["selector"], service["metadata"]["labels"]):
                assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
                jobs.add(service["metadata"]["labels"][spec["jobLabel"]])
    assert jobs == {"gold-annotator", "judge-pool", "rollout-generator", "learner"}


# --- alerts --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        MONITORING,
        {
            "metrics": {
                "prometheusRule": {
                    "enabled": True,
                    "queueLagMessages": 1000,
                    "invalidJudgementRatio": 0.1,
                    "for": "10m",
                }
            }
        },
    ],
    ids=["monitoring", "defaults"],
)
def test_alert_rules_pass_promtool_check(values: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(_rules(values)))
    result = _promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 rules found" in result.stdout


def test_alerts_cover_the_required_conditions() -> None:
    (group,) = _rules(MONITORING)["groups"]
    alerts = {rule["alert"]: rule for rule in group["rules"]}
    assert set(alerts) == {
        "JudgelabRewardHackingDetected",
        "JudgelabQueueLagHigh",
        "JudgelabJudgeInvalidRateHigh",
        "JudgelabServiceDown",
    }
    for rule in alerts.values():
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    assert "> 500" in alerts["JudgelabQueueLagHigh"]["expr"]
    assert "> 0.05" in alerts["JudgelabJudgeInvalidRateHigh"]["expr"]


def _series(name: str, values: str, **labels: str) -> dict[str, str]:
    base = {"namespace": "exp", "experiment": "e"}
    selector = ",".join(f'{k}="{v}"' for k, v in {**base, **labels}.items())
    return {"series": f"{name}{{{selector}}}", "values": values}


def _expect(at: str, alert: str, *labels: dict[str, str]) -> dict[str, Any]:
    return {
        "eval_time": at,
        "alertname": alert,
        "exp_alerts": [{"exp_labels": label} for label in labels],
    }


def test_alerts_fire_on_synthetic_series(tmp_path: Path) -> None:
    """promtool test rules: each alert fires when its condition holds long enough, not before."""
    rules = _rules(MONITORING)  # for: 5m, lag > 500, invalid share > 0.05
    for rule in rules["groups"][0]["rules"]:
        rule.pop("annotations")  # their templates are checked by promtool check rules
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    stream = {"service": "judge-pool", "stream": "jl:e:rollouts:plain"}
    judge = {"service": "judge-pool", "judge": "plain"}
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    _series("judgelab_hacking_detected", "0 0 1 1 1 1 1 1 1 1", arm="plain"),
                    _series("judgelab_hacking_detected", "0x9", arm="reasoning"),
                    _series("judgelab_stream_lag_messages", "2000x20", **stream),
                    _series("judgelab_judgements_total", "0+100x30", **judge),
                    _series(
                        "judgelab_invalid_judgements_total",
                        "0+20x30",
                        reason="unparseable",
                        **judge,
                    ),
                    {"series": 'up{job="judge-pool",namespace="exp",pod="dead"}', "values": "0x10"},
                    {
                        "series": 'up{job="judge-pool",namespace="exp",pod="alive"}',
                        "values": "1x10",
                    },
                ],
                "alert_rule_test": [
                    _expect("1m", "JudgelabRewardHackingDetected"),
                    _expect(
                        "3m",
                        "JudgelabRewardHackingDetected",
                        {
                            "severity": "warning",
                            "namespace": "exp",
                            "experiment": "e",
                            "arm": "plain",
                        },
                    ),
                    _expect("3m", "JudgelabQueueLagHigh"),
                    _expect(
                        "10m",
                        "JudgelabQueueLagHigh",
                        {"severity": "warning", "namespace": "exp", "experiment": "e", **stream},
                    ),
                    _expect(
                        "15m",
                        "JudgelabJudgeInvalidRateHigh",
                        {"severity": "warning", "namespace": "exp", "experiment": "e", **judge},
                    ),
                    _expect("3m", "JudgelabServiceDown"),
                    _expect(
                        "8m",
                        "JudgelabServiceDown",
                        {
                            "severity": "critical",
                            "job": "judge-pool",
                            "namespace": "exp",
                            "pod": "dead",
                        },
                    ),
                ],
            }
        ],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests))
    result = _promtool("test", "rules", "tests.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


# --- dashboard and metric names ------------------------------------------------------------------


def test_dashboard_json_is_what_the_generator_writes() -> None:
    result = subprocess.run(
        [sys.executable, str(PLATFORM / "dashboards/generate.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_dashboard_round_trips_through_the_grafana_sdk_types() -> None:
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import Dashboard

    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    again = json.loads(json.dumps(Dashboard.from_json(board), cls=JSONEncoder))
    assert again == board


def test_dashboard_configmap_carries_the_json_for_the_sidecar() -> None:
    configmap = render(PLATFORM, MONITORING).one("ConfigMap", "dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["namespace"] == "monitoring"
    assert json.loads(configmap["data"]["judgelab.json"]) == json.loads(DASHBOARD.read_text())


def test_dashboard_has_the_required_panels() -> None:
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    titles = " | ".join(p["title"] for p in board["panels"]).lower()
    for wanted in (
        "proxy vs gold",
        "hacking gap",
        "kl(",
        "latency",
        "invalid",
        "stream lag",
        "tokens/s",
        "gpu utilisation",
    ):
        assert wanted in titles, wanted
    assert "do not edit" in board["description"]


def test_dashboard_queries_parse_with_prometheus(tmp_path: Path) -> None:
    """Every panel query, as Prometheus' own parser sees it (as recording rules)."""
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    rules = [
        {"record": f"judgelab:dashboard:{i}", "expr": without_grafana_variables(expr)}
        for i, (_, expr) in enumerate(dashboard_exprs(board))
    ]
    (tmp_path / "queries.yaml").write_text(
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]})
    )
    result = _promtool("check", "rules", "queries.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def _used_metrics() -> dict[str, str]:
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    used = {
        name: f"dashboard: {title}"
        for title, expr in dashboard_exprs(board)
        for name in metric_names(without_grafana_variables(expr))
    }
    for rule in _rules(MONITORING)["groups"][0]["rules"]:
        used |= {name: f"alert {rule['alert']}" for name in metric_names(rule["expr"])}
    return used


def test_every_metric_read_is_one_a_service_exports(service_metric_names: set[str]) -> None:
    known = service_metric_names | LEARNER_METRICS | set(FOREIGN_METRICS)
    unknown = {name: where for name, where in _used_metrics().items() if name not in known}
    assert unknown == {}


def test_the_learner_metric_list_is_used_and_new(service_metric_names: set[str]) -> None:
    assert LEARNER_METRICS <= set(_used_metrics())
    assert not LEARNER_METRICS & service_metric_names


def test_the_learner_exports_the_metrics_the_dashboard_reads() -> None:
    from judgelab.learner.metrics import LearnerMetrics

    families = LearnerMetrics("demo").service.registry.collect()
    assert LEARNER_METRICS <= {family.name for family in families}
