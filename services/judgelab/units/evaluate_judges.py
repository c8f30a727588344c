"""``RUN/judges.json`` in the report's shape, from the judge-training unit's flat list.

TrainJudges (``units.judge_eval``) writes a list with one entry per (judge, trained); the report
reads ``{"scale": {...}, "judges": [...]}`` with one record per judge name. This rewrites the
file in the report's shape, keeping everything: the record of each judge is its trained entry
(the untrained one when the judge was not trained); extra keys the report ignores carry the
rest (``trained``, ``examples``, ``position_consistency``, ``undefined``, ``untrained``), and
``evaluations`` keeps the original list verbatim, so converting again gives the same file.
Cost per judgement comes from the judge-eval run (``judgements_per_s``) when recorded, else from
Evaluate's own judge-pool calls; tokens per judgement from Evaluate's calls.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from judgelab.spec.experiment import Experiment
from judgelab.units.evaluate_outputs import EvaluateError
from judgelab.units.evaluate_results import write_json
from judgelab.units.evaluate_scoring import Verdict

JUDGES_JSON = "judges.json"
AGREEMENT = ("alpha_interval", "alpha_ordinal", "pearson", "spearman", "accuracy")
EXTRAS = ("trained", "examples", "position_consistency", "undefined")


def convert_judges_json(
    run_dir: Path, experiment: Experiment, costs: Mapping[str, Sequence[Verdict]]
) -> Path | None:
    """Rewrite RUN/judges.json for the report; None (nothing written) when it is missing."""
    path = run_dir / JUDGES_JSON
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise EvaluateError(f"{path}: not JSON: {error}") from None
    entries = data.get("evaluations") if isinstance(data, dict) else data
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise EvaluateError(f"{path}: expected a list of judge evaluations (units.judge_eval)")
    scale = experiment.spec.gold.scale
    write_json(
        path,
        {
            "scale": {"min": scale.min, "max": scale.max},
            "judges": judge_records(entries, costs),
            "evaluations": entries,
        },
    )
    return path


def judge_records(
    entries: Sequence[Mapping[str, Any]], costs: Mapping[str, Sequence[Verdict]]
) -> list[dict[str, Any]]:
    """One report record per judge name, in name order."""
    by_name: dict[str, dict[bool, Mapping[str, Any]]] = {}
    for entry in entries:
        by_name.setdefault(str(entry.get("name")), {})[bool(entry.get("trained"))] = entry
    records = []
    for name in sorted(by_name):
        versions = by_name[name]
        chosen = versions.get(True) or versions[False]
        record = _record(name, chosen, costs.get(name, ()))
        if True in versions and False in versions:
            record["untrained"] = {m: _number(versions[False].get(m)) for m in AGREEMENT}
        records.append(record)
    return records


def _record(name: str, entry: Mapping[str, Any], verdicts: Sequence[Verdict]) -> dict[str, Any]:
    measured = [v for v in verdicts if v.tokens or v.latency_s]
    rate = _number(entry.get("judgements_per_s"))
    seconds = 1.0 / rate if rate else _mean([v.latency_s for v in measured])
    reasoning = entry.get("reasoning")
    return {
        "name": name,
        "protocol": entry.get("protocol") or "pointwise",
        "reasoning": reasoning if isinstance(reasoning, bool) else None,
        "agreement": {m: _bounded(entry.get(m)) for m in AGREEMENT},
        "invalid_rate": _number(entry.get("invalid_rate")),
        "reasoning_tokens_mean": _number(entry.get("mean_reasoning_tokens")),
        "seconds_per_judgement": seconds,
        "tokens_per_judgement": _mean([float(v.tokens) for v in measured]),
        "cost_source": "judge_eval" if rate else ("evaluate" if measured else None),
        **{key: entry.get(key) for key in EXTRAS if key in entry},
    }


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _bounded(value: Any) -> float | None:
    """An agreement metric in [-1, 1] (what the report accepts); else None."""
    number = _number(value)
    return number if number is not None and -1.0 <= number <= 1.0 else None


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None
