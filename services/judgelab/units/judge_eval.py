"""Agreement of one judge (trained or not) with gold on the held-out judge_eval split.

Pointwise judges: Krippendorff's alpha (interval, ordinal), Pearson and Spearman of the judge's
expected score against the gold score. Pairwise judges: pairs are the eval responses to one
prompt whose gold scores differ (gold prefers the higher); accuracy and position consistency
over both display orders. Both: invalid rate, mean reasoning tokens per judgement and
judgements per second (the judge's cost). Rows without a valid gold score are not judged.

RUN/judges.json holds one entry per (judge, trained); each unit replaces its own entries.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from judgelab.atomic_files import write_text_atomic
from judgelab.judging import Pair, PairwiseJudge, PointwiseJudge
from judgelab.judging.agreement import pairwise_agreement, pointwise_agreement
from judgelab.judging.samples import prompt_text
from judgelab.units.gold_rows import GoldRow, require_rubrics, sample_of
from judgelab.units.progress import ProgressFn

NAN = float("nan")
JUDGES_JSON = "judges.json"
#: Items per judge call: small enough for progress, large enough to fill the engine's batches.
CHUNK = 16


@dataclass(frozen=True)
class JudgeEvaluation:
    """One row of RUN/judges.json; metrics that do not apply or are undefined are nan."""

    name: str
    trained: bool
    protocol: str
    reasoning: bool
    alpha_interval: float = NAN
    alpha_ordinal: float = NAN
    pearson: float = NAN
    spearman: float = NAN
    accuracy: float = NAN
    position_consistency: float = NAN
    invalid_rate: float = NAN
    mean_reasoning_tokens: float = NAN
    judgements_per_s: float = NAN
    examples: int = 0
    undefined: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: nan becomes null."""
        return {k: None if _is_nan(v) else v for k, v in asdict(self).items()}


def evaluate_judge(
    judge: PointwiseJudge | PairwiseJudge,
    rows: Sequence[GoldRow],
    trained: bool,
    progress: ProgressFn | None = None,
) -> JudgeEvaluation:
    """Agreement with gold; ``progress`` gets ``(judged, total, "eval ...")`` after each chunk."""
    require_rubrics(judge.config, rows, "the judge-eval split")
    if isinstance(judge, PairwiseJudge):
        return evaluate_pairwise(judge, rows, trained, progress)
    return evaluate_pointwise(judge, rows, trained, progress)


def _report(progress: ProgressFn | None, done: int, total: int, trained: bool) -> None:
    if progress is not None:
        which = "trained" if trained else "untrained"
        progress(done, total, f"eval ({which} judge) {done}/{total} judgements")


def evaluate_pointwise(
    judge: PointwiseJudge,
    rows: Sequence[GoldRow],
    trained: bool,
    progress: ProgressFn | None = None,
) -> JudgeEvaluation:
    scale = judge.config.scale
    labelled = [r for r in rows if r.valid and r.score is not None and r.score in scale]
    started = time.perf_counter()
    judgements = []
    _report(progress, 0, len(labelled), trained)
    for start in range(0, len(labelled), CHUNK):
        chunk = labelled[start : start + CHUNK]
        judgements.extend(judge.judge([sample_of(row) for row in chunk]))
        _report(progress, len(judgements), len(labelled), trained)
    seconds = time.perf_counter() - started
    scores = [min(max(j.expected, scale.min), scale.max) if j.valid else None for j in judgements]
    agreement = pointwise_agreement(
        scores,
        [row.score for row in labelled],
        scale_min=scale.min,
        scale_max=scale.max,
        reasoning_tokens=[j.completion_tokens for j in judgements],
    )
    return JudgeEvaluation(
        name=judge.config.name,
        trained=trained,
        protocol="pointwise",
        reasoning=judge.config.reasoning,
        alpha_interval=agreement.alpha_interval,
        alpha_ordinal=agreement.alpha_ordinal,
        pearson=agreement.pearson,
        spearman=agreement.spearman,
        invalid_rate=agreement.invalid_rate,
        mean_reasoning_tokens=agreement.mean_reasoning_tokens,
        judgements_per_s=_rate(len(judgements), seconds),
        examples=len(labelled),
        undefined=dict(agreement.undefined),
    )


def evaluate_pairwise(
    judge: PairwiseJudge,
    rows: Sequence[GoldRow],
    trained: bool,
    progress: ProgressFn | None = None,
) -> JudgeEvaluation:
    pairs, gold = gold_pairs(rows)
    base = JudgeEvaluation(
        name=judge.config.name,
        trained=trained,
        protocol="pairwise",
        reasoning=judge.config.reasoning,
    )
    if not pairs:
        reason = "no two eval responses to one prompt with different gold scores"
        return JudgeEvaluation(**{**asdict(base), "undefined": {"pairs": reason}})
    started = time.perf_counter()
    judgements = []
    _report(progress, 0, len(pairs), trained)
    for start in range(0, len(pairs), CHUNK):
        judgements.extend(judge.judge(pairs[start : start + CHUNK], both_orders=True))
        _report(progress, len(judgements), len(pairs), trained)
    seconds = time.perf_counter() - started
    agreement = pairwise_agreement(
        [j.p_a_preferred if j.valid else None for j in judgements],
        list(gold),
        [j.position_consistent if j.valid else None for j in judgements],
    )
    tokens = [j.completion_tokens for j in judgements]
    return JudgeEvaluation(
        **{
            **asdict(base),
            "accuracy": agreement.accuracy,
            "position_consistency": agreement.position_consistency_rate,
            "invalid_rate": agreement.invalid_rate,
            "mean_reasoning_tokens": sum(tokens) / len(tokens),
            "judgements_per_s": _rate(len(judgements), seconds),
            "examples": len(pairs),
            "undefined": dict(agreement.undefined),
        }
    )


def gold_pairs(rows: Sequence[GoldRow]) -> tuple[list[Pair], list[int]]:
    """Pairs of validly labelled responses to one prompt with different gold scores, and gold's
    preference (1: A). Which response is A alternates, so gold prefers A about half the time."""
    by_prompt: dict[tuple[str, str | None], list[GoldRow]] = {}
    for row in rows:
        if row.valid and row.score is not None:
            by_prompt.setdefault((prompt_text(row.prompt), row.reference), []).append(row)
    pairs: list[Pair] = []
    gold: list[int] = []
    for group in by_prompt.values():
        for i, first in enumerate(group):
            for second in group[i + 1 :]:
                if first.score == second.score:
                    continue
                a, b = (first, second) if len(pairs) % 2 == 0 else (second, first)
                assert a.score is not None and b.score is not None
                pairs.append(
                    Pair(f"{a.id}|{b.id}", a.prompt, a.response, b.response, a.reference, a.rubric)
                )
                gold.append(1 if a.score > b.score else 0)
    return pairs, gold


def update_judges_json(run_dir: Path, evaluations: Sequence[JudgeEvaluation]) -> Path:
    """Replace these (name, trained) entries in RUN/judges.json, atomically; returns the path."""
    path = run_dir / JUDGES_JSON
    data = json.loads(path.read_text()) if path.is_file() else []
    # Evaluate rewrites the file in the report's shape, keeping these rows under "evaluations".
    entries: list[dict[str, Any]] = data.get("evaluations", []) if isinstance(data, dict) else data
    replaced = {(e.name, e.trained) for e in evaluations}
    kept = [e for e in entries if (e.get("name"), e.get("trained")) not in replaced]
    merged = kept + [e.to_dict() for e in evaluations]
    merged.sort(key=lambda e: (str(e.get("name")), bool(e.get("trained"))))
    write_json_atomic(path, merged)
    return path


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def _rate(count: int, seconds: float) -> float:
    return count / seconds if count and seconds > 0 else NAN


def _is_nan(value: object) -> bool:
    return isinstance(value, float) and math.isnan(value)
