"""Gold-labelled rows written by the Annotate unit (RUN/annotate/judge_{train,eval}.jsonl).

One JSON object per line (``units.annotate`` writes them): ``id``, ``prompt`` (text or chat
turns), ``response``, optional ``reference`` and ``rubric`` (the gold judge's rubric for the
prompt, when a judge uses gold rubrics), ``gold_score`` (int or null), ``gold_reasoning``,
``valid`` and ``invalid_reason``; ``score`` / ``reasoning`` are accepted for the gold fields.
A line that is not an object, or lacks ``id``/``prompt``/``response``, is an error naming it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from judgelab.engines.base import ChatMessage
from judgelab.judging import JudgeConfig, Sample
from judgelab.judging.samples import Prompt

JUDGE_TRAIN = "judge_train.jsonl"
JUDGE_EVAL = "judge_eval.jsonl"
_ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class GoldRow:
    """One (prompt, response) pair with the gold judge's verdict."""

    id: str
    prompt: Prompt
    response: str
    reference: str | None
    score: int | None
    reasoning: str
    valid: bool
    invalid_reason: str | None = None
    rubric: str | None = None


def gold_split_path(run_dir: Path, split: str) -> Path:
    """RUN/annotate/<split>; split is JUDGE_TRAIN or JUDGE_EVAL."""
    return run_dir / "annotate" / split


def read_gold_rows(path: Path) -> list[GoldRow]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no gold-labelled split (has the Annotate phase run?)")
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                rows.append(_row(json.loads(line), f"{path}:{number}"))
    return rows


def sample_of(row: GoldRow) -> Sample:
    return Sample(
        id=row.id,
        prompt=row.prompt,
        response=row.response,
        reference=row.reference,
        rubric=row.rubric,
    )


class MissingRubrics(ValueError):
    """A gold-rubric judge was given rows without the gold judge's rubric for their prompt."""


def require_rubrics(config: JudgeConfig, rows: Sequence[GoldRow], where: str) -> None:
    """Raise MissingRubrics naming the rows of ``where`` a gold-rubric judge cannot see a
    rubric for (nothing to check for other judges)."""
    if not config.gold_rubric:
        return
    missing = [row.id for row in rows if row.rubric is None or not row.rubric.strip()]
    if missing:
        raise MissingRubrics(
            f"judge {config.name!r} is shown the gold judge's per-prompt rubric "
            f"(rubric_source: gold) but {len(missing)} of {len(rows)} rows of {where} have "
            f"none: {', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}; rerun the "
            "Annotate phase (it writes RUN/annotate/rubrics.jsonl and a rubric on every row)"
        )


def _row(data: Any, where: str) -> GoldRow:
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected a JSON object")
    for key in ("id", "prompt", "response"):
        if key not in data:
            raise ValueError(f"{where}: missing field {key!r}")
    score = _first(data, "gold_score", "score")
    if score is not None and (isinstance(score, bool) or not isinstance(score, int)):
        raise ValueError(f"{where}: score must be an integer or null, got {score!r}")
    valid = _first(data, "valid", "gold_valid")
    reference = data.get("reference")
    rubric = data.get("rubric")
    return GoldRow(
        id=str(data["id"]),
        prompt=_prompt(data["prompt"], where),
        response=str(data["response"]),
        reference=str(reference) if reference is not None else None,
        score=score,
        reasoning=str(_first(data, "gold_reasoning", "reasoning") or ""),
        valid=bool(score is not None if valid is None else valid),
        invalid_reason=_first(data, "invalid_reason", "gold_invalid_reason"),
        rubric=str(rubric) if rubric is not None else None,
    )


def _first(data: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if key in data:
            return data[key]
    return None


def _prompt(value: Any, where: str) -> Prompt:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(m, Mapping) for m in value):
        turns = []
        for message in value:
            role = message.get("role")
            if role not in _ROLES:
                raise ValueError(f"{where}: prompt role must be one of {_ROLES}, got {role!r}")
            turns.append(ChatMessage(role, str(message.get("content", ""))))
        return tuple(turns)
    raise ValueError(f"{where}: prompt must be text or a list of chat turns")
