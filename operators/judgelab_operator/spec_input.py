"""Reading the Experiment object the API server hands the operator."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from judgelab.spec import Experiment, SpecError, validate_mapping
from judgelab_operator.labels import DELETE_DATA_ANNOTATION


def parse_experiment(body: Mapping[str, Any]) -> tuple[Experiment | None, list[str]]:
    """The validated Experiment, or the problems (`spec.arms[0].judge: must name ...`)."""
    meta = body.get("metadata") or {}
    source = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
    document = {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {
            k: meta[k] for k in ("name", "namespace", "labels", "annotations") if k in meta
        },
        "spec": body.get("spec"),
    }
    try:
        return validate_mapping(document, source=source), []
    except SpecError as exc:
        return None, [_problem_text(p.path, p.value, p.message) for p in exc.problems]


def generation(body: Mapping[str, Any]) -> int | None:
    """metadata.generation (None where the API server did not set one)."""
    value = (body.get("metadata") or {}).get("generation")
    return int(value) if value is not None else None


def keep_data(body: Mapping[str, Any]) -> bool:
    """Checkpoints and results survive deletion unless the Experiment opts out."""
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(DELETE_DATA_ANNOTATION, "")).lower() != "true"


def _problem_text(path: str, value: str | None, message: str) -> str:
    where = path or "<object>"
    return f"{where}: {value} — {message}" if value is not None else f"{where}: {message}"
