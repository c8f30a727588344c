"""Writes judgelab.json, the Grafana dashboard, with Grafana's typed builders.

    python charts/judgelab/dashboards/generate.py          # rewrite judgelab.json
    python charts/judgelab/dashboards/generate.py --check  # exit 1 if judgelab.json is stale

Needs `grafana-foundation-sdk` (the Grafana 11.6 build). tests/unit/test_charts.py fails when
the checked-in JSON differs from what this writes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DataSourceRef,
    Threshold,
    ThresholdsMode,
    VariableRefresh,
    VariableSort,
)

OUTPUT = Path(__file__).with_name("judgelab.json")
UID = "judgelab-overview"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
EXPERIMENT = 'experiment=~"$experiment"'
ARM = f'{EXPERIMENT}, arm=~"$arm"'
RATE = "$__rate_interval"


def query(expr: str, legend: str, ref_id: str = "A") -> prometheus.Dataquery:
    return (
        prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref_id)
        .datasource(DATASOURCE).range()
    )


def series(title: str, description: str, unit: str, *queries: prometheus.Dataquery,
           width: int = 12) -> timeseries.Panel:
    panel = (
        timeseries.Panel().title(title).description(description).unit(unit)
        .datasource(DATASOURCE).height(8).span(width).line_width(2).fill_opacity(8)
    )
    for item in queries:
        panel = panel.with_target(item)
    return panel


def variable(name: str, label: str, values: str) -> dashboard.QueryVariable:
    return (
        dashboard.QueryVariable(name).label(label).datasource(DATASOURCE)
        .query({"query": values, "refId": f"{name}-values"})
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).sort(VariableSort.ALPHABETICAL_ASC)
        .multi(True).include_all(True).all_value(".*")
    )


def hacking_row() -> list[Any]:
    reward = series(
        "Proxy vs gold reward per arm",
        "What the policy optimises (proxy judge) against what we wanted (gold judge). "
        "Hacking: the proxy line rises while the gold line falls.",
        "none",
        query(f"judgelab_learner_proxy_reward{{{ARM}}}", "{{arm}} proxy"),
        query(f"judgelab_learner_gold_reward{{{ARM}}}", "{{arm}} gold", "B"),
    )
    gap = series(
        "Hacking gap", "Proxy minus gold reward, both on the judge's scale.", "none",
        query(f"judgelab_hacking_gap{{{ARM}}}", "{{arm}}"), width=8,
    )
    flagged = (
        stat.Panel().title("Arms flagged as hacking")
        .description("Arms whose hacking detector fires (judgelab_hacking_detected).")
        .datasource(DATASOURCE).height(8).span(4)
        .with_target(query(f"sum(max by (arm) (judgelab_hacking_detected{{{ARM}}}))", "arms"))
        .thresholds(dashboard.ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps([
            Threshold(value=None, color="green"), Threshold(value=1, color="red")]))
    )
    kl = series(
        "KL(policy ‖ initial policy)", "How far each arm's policy moved from where it started.",
        "none", query(f"judgelab_learner_kl{{{ARM}}}", "{{arm}}"),
    )
    return [reward, gap, flagged, kl]


def judges_row() -> list[Any]:
    latency = series(
        "Request latency (p50, p95)", "gRPC latency of each service's methods.", "s",
        query(_quantile(0.5), "{{service}} {{method}} p50"),
        query(_quantile(0.95), "{{service}} {{method}} p95", "B"),
    )
    invalid = series(
        "Invalid judge outputs", "Share of each judge's outputs that could not be used.",
        "percentunit",
        query(f"sum by (judge) (rate(judgelab_invalid_judgements_total{{{EXPERIMENT}}}[{RATE}]))"
              f" / sum by (judge) (rate(judgelab_judgements_total{{{EXPERIMENT}}}[{RATE}]))",
              "{{judge}}"),
    )
    tokens = series(
        "Judge tokens/s", "Prompt tokens sent to and tokens written by judge models.", "short",
        query(f"sum by (judge) (rate(judgelab_tokens_in_total{{{EXPERIMENT}}}[{RATE}]))",
              "{{judge}} in"),
        query(f"sum by (judge) (rate(judgelab_tokens_out_total{{{EXPERIMENT}}}[{RATE}]))",
              "{{judge}} out", "B"),
    )
    batches = series(
        "Judgements/s and mean batch size", "Throughput and how full the model batches are.",
        "short",
        query(f"sum by (judge) (rate(judgelab_judgements_total{{{EXPERIMENT}}}[{RATE}]))",
              "{{judge}} judgements/s"),
        query(f"sum by (judge) (rate(judgelab_batch_size_sum{{{EXPERIMENT}}}[{RATE}]))"
              f" / sum by (judge) (rate(judgelab_batch_size_count{{{EXPERIMENT}}}[{RATE}]))",
              "{{judge}} batch size", "B"),
    )
    return [latency, invalid, tokens, batches]


def queues_row() -> list[Any]:
    lag = series(
        "Stream lag", "Entries not yet delivered to each consumer group (back-pressure).",
        "short",
        query(f"max by (service, stream) (judgelab_stream_lag_messages{{{EXPERIMENT}}})",
              "{{stream}} ({{service}})"),
        width=8,
    )
    pending = series(
        "Pending (delivered, not acknowledged)", "Work in flight in each consumer group.",
        "short",
        query(f"max by (service, stream) (judgelab_stream_pending_messages{{{EXPERIMENT}}})",
              "{{stream}} ({{service}})"),
        width=8,
    )
    waiting = series(
        "Judge queue length", "Items waiting in each judge's micro-batcher.", "short",
        query(f"sum by (service, judge) (judgelab_queue_length{{{EXPERIMENT}}})",
              "{{judge}} ({{service}})"),
        width=8,
    )
    faults = series(
        "Reclaimed and dead-lettered/s", "Work taken over from dead consumers, and refused work.",
        "short",
        query(f"sum by (stream) (rate(judgelab_reclaimed_messages_total{{{EXPERIMENT}}}[{RATE}]))",
              "{{stream}} reclaimed"),
        query(f"sum by (stream) (rate(judgelab_dead_lettered_messages_total{{{EXPERIMENT}}}"
              f"[{RATE}]))", "{{stream}} dead-lettered", "B"),
    )
    cache = series(
        "Gold cache hit ratio", "Gold judgements served from the durable cache (never paid twice).",
        "percentunit",
        query(f"sum(rate(judgelab_cache_hits_total{{{EXPERIMENT}}}[{RATE}])) / (sum(rate("
              f"judgelab_cache_hits_total{{{EXPERIMENT}}}[{RATE}])) + sum(rate("
              f"judgelab_cache_misses_total{{{EXPERIMENT}}}[{RATE}])))", "hit ratio"),
    )
    return [lag, pending, waiting, faults, cache]


def gpu_row() -> list[Any]:
    """NVIDIA DCGM exporter series; empty where no GPU (or no exporter) is present."""
    utilisation = series(
        "GPU utilisation", "DCGM exporter, per GPU of this experiment's pods.", "percent",
        query('DCGM_FI_DEV_GPU_UTIL{namespace=~"$namespace"}', "{{pod}} GPU {{gpu}}"),
    )
    memory = series(
        "GPU memory used", "DCGM exporter, framebuffer in use per GPU.", "decmbytes",
        query('DCGM_FI_DEV_FB_USED{namespace=~"$namespace"}', "{{pod}} GPU {{gpu}}"),
    )
    return [utilisation, memory]


def _quantile(q: float) -> str:
    return (f"histogram_quantile({q}, sum by (le, service, method) "
            f"(rate(judgelab_request_seconds_bucket{{{EXPERIMENT}}}[{RATE}])))")


def build() -> dict[str, Any]:
    board = (
        dashboard.Dashboard("judgelab").uid(UID).tags(["judgelab"])
        .description("LLM judges in RL post-training: reward hacking, judges, queues, GPUs. "
                     "Generated by charts/judgelab/dashboards/generate.py; do not edit.")
        .refresh("30s").time("now-6h", "now").timezone("browser").readonly()
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .with_variable(dashboard.DatasourceVariable("datasource").label("Data source")
                       .type("prometheus"))
        .with_variable(variable("experiment", "Experiment",
                                "label_values(judgelab_requests_total, experiment)"))
        .with_variable(variable("arm", "Arm", "label_values(judgelab_learner_proxy_reward, arm)"))
        .with_variable(variable("namespace", "Namespace (GPU panels)",
                                "label_values(DCGM_FI_DEV_GPU_UTIL, namespace)"))
    )
    rows = [("Reward hacking", hacking_row()), ("Judges", judges_row()),
            ("Queues", queues_row()), ("GPU (if present)", gpu_row())]
    for title, panels in rows:
        board = board.with_row(dashboard.Row(title))
        for panel in panels:
            board = board.with_panel(panel)
    built: dict[str, Any] = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    return built


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT} is stale: run python {Path(__file__).as_posix()}", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
