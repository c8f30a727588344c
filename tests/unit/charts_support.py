"""Render the Helm charts with real Helm and read what they produce.

Helm here is Helm's own Go SDK (v4) in `helm-python-sdk` (`import helm_python`):
`Chart.render` is the engine `helm template` runs (hooks and NOTES.txt included) and
`Config.install(dry_run="client")` is `helm install --dry-run=client`, both without a cluster.
"""

from __future__ import annotations

import copy
import re
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import helm_python as helm
import promql_parser
import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
PLATFORM = ROOT / "charts/judgelab"
EXPERIMENT = ROOT / "charts/judgelab-experiment"
CHARTS = (PLATFORM, EXPERIMENT)
NAMESPACE = "judgelab"
POD_KINDS = ("Deployment", "StatefulSet", "Job", "DaemonSet")


@dataclass
class Rendered:
    """Every object one release of a chart would create, hooks and CRDs included."""

    objects: list[dict[str, Any]]
    notes: str
    crds: list[dict[str, Any]] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, name_part: str = "") -> dict[str, Any]:
        found = [o for o in self.of_kind(kind) if name_part in o["metadata"]["name"]]
        assert len(found) == 1, f"{kind} *{name_part}*: {[o['metadata']['name'] for o in found]}"
        return found[0]


def scenarios(chart: Path) -> list[Path]:
    return sorted((chart / "ci").glob("*-values.yaml"))


def load_values(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    return dict(loaded or {})


def release_name(chart: Path, values: dict[str, Any]) -> str:
    """The operator names an experiment's release after the Experiment."""
    if chart == EXPERIMENT and "experiment" in values:
        return str(values["experiment"]["name"])
    return "judgelab"


def render(chart: Path, values: dict[str, Any], release: str | None = None) -> Rendered:
    """`helm template --include-crds`, after the same values-schema check `helm install` does."""
    name = release or release_name(chart, values)
    with helm.Chart.load(str(chart)) as loaded:
        loaded.validate_schema(values)
        files = loaded.render(
            copy.deepcopy(values), name=name, namespace=NAMESPACE, is_install=True
        )
        crd_files = loaded.crds
    objects, notes = [], ""
    for path, text in sorted(files.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        objects += [doc for doc in yaml.safe_load_all(text) if doc]
    crds = [doc for f in crd_files for doc in yaml.safe_load_all(f["data"]) if doc]
    return Rendered(objects, notes, crds)


def install_dry_run(chart: Path, values: dict[str, Any], release: str | None = None) -> str:
    """`helm install --dry-run=client`: the manifest Helm would apply (hooks excluded)."""
    with helm.Config(namespace=NAMESPACE, storage_driver="memory") as config:
        result = config.install(
            str(chart),
            release or release_name(chart, values),
            copy.deepcopy(values),
            dry_run="client",
        )
    return str(result["manifest"])


def lint(chart: Path, values: dict[str, Any]) -> list[dict[str, Any]]:
    """`helm lint --strict` findings of warning severity or worse."""
    report = helm.lint(str(chart), copy.deepcopy(values), strict=True, namespace=NAMESPACE)
    return [m for m in report["messages"] if m["severity"] >= 2] + [
        {"error": e} for e in report.get("errors") or []
    ]


def pod_templates(rendered: Rendered) -> Iterator[tuple[str, dict[str, Any]]]:
    """(kind/name, pod spec with metadata) of every workload and bare pod."""
    for obj in rendered.objects:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] in POD_KINDS:
            yield name, obj["spec"]["template"]
        elif obj["kind"] == "Pod":
            yield name, obj


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector with only matchLabels selects these labels."""
    assert set(selector) <= {"matchLabels"}, f"teach selects() about {set(selector)}"
    wanted = selector.get("matchLabels", {})
    return all(labels.get(key) == value for key, value in wanted.items())


# --- PromQL --------------------------------------------------------------------------------------

GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$experiment": ".*",
    "$arm": ".*",
    "$namespace": ".*",
}


def without_grafana_variables(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
    return expr


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads, from Prometheus' grammar (promql-parser)."""
    names: set[str] = set()

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            assert node.name, f"selector without a metric name in {expr!r}"
            names.add(node.name)
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def exported_names(metrics_text: str) -> set[str]:
    """Sample names a /metrics page offers, derived from its metric families' types."""
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_sum", "_count"),
        "gauge": ("",),
        "summary": ("_sum", "_count", ""),
    }
    names = set()
    for family in text_string_to_metric_families(metrics_text):
        names |= {family.name + suffix for suffix in suffixes.get(family.type, ("",))}
    return names


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        body: bytes = response.read()
    return body.decode("utf-8")


def dashboard_exprs(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) of every query in a dashboard, variable queries included."""
    found = [
        (panel.get("title", ""), target["expr"])
        for panel in board["panels"]
        for target in panel.get("targets", [])
    ]
    for variable in board["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            match = re.fullmatch(r"label_values\((.+), *\w+\)", query["query"])
            assert match, f"variable {variable['name']}: {query['query']!r}"
            found.append((f"variable {variable['name']}", match.group(1)))
    return found
