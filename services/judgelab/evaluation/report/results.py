"""results.json: every number the report shows, all finite; a non-finite one becomes null."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def finite_tree(value: Any, path: str = "", nulls: dict[str, str] | None = None) -> Any:
    """A JSON-ready copy of ``value`` with each NaN/infinity replaced by None, its path noted."""
    if nulls is None:
        nulls = {}
    if isinstance(value, dict):
        return {
            str(k): finite_tree(v, f"{path}.{k}" if path else str(k), nulls)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [finite_tree(v, f"{path}[{i}]", nulls) for i, v in enumerate(value)]
    if isinstance(value, float) and not math.isfinite(value):
        nulls[path] = f"{value} is not a finite number (a degenerate input to the computation)"
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def write_results(results: dict[str, Any], path: Path) -> None:
    """Write ``results`` with non-finite numbers nulled and listed under ``null_reasons``."""
    nulls: dict[str, str] = {}
    clean = finite_tree(results, nulls=nulls)
    clean["null_reasons"] = {**clean.get("null_reasons", {}), **nulls}
    path.write_text(json.dumps(clean, indent=2, allow_nan=False) + "\n", encoding="utf-8")
