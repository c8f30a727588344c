"""``RUN/evaluate/``: the cross-judge matrix, pairwise outcomes vs baseline, start/end outputs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from judgelab.evaluation.report.errors import ReportInputError
from judgelab.evaluation.report.jsonio import Fields, read_json, read_jsonl

GOLD = "gold"
#: Pairwise outcome words and the win credit each one gives (ties count half).
OUTCOME_CREDIT = {"win": 1.0, "tie": 0.5, "loss": 0.0}
STAGES = ("start", "end")


@dataclass(frozen=True)
class CrossScores:
    """``scores[scorer][arm]``: the mean score a judge (or "gold") gives the arm's outputs."""

    scores: dict[str, dict[str, float | None]]

    @classmethod
    def load(cls, path: Path) -> CrossScores:
        top = Fields.of(read_json(path), path)
        table = top.child("scores")
        scores: dict[str, dict[str, float | None]] = {}
        for scorer in table.data:
            row = table.child(scorer)
            scores[scorer] = {arm: row.number(arm) for arm in row.data}
        return cls(scores)


@dataclass(frozen=True)
class PairwiseFile:
    """Per arm, the gold judge's credit per prompt vs the baseline: 1 win, 0.5 tie, 0 loss.
    ``initial``: the initial policy's credits when the baseline is an answers file."""

    baseline: str
    judge: str
    credits: dict[str, tuple[float, ...]]
    initial: tuple[float, ...] | None = None

    @classmethod
    def load(cls, path: Path) -> PairwiseFile:
        top = Fields.of(read_json(path), path)
        arms = top.child("arms")
        credits = {
            arm: tuple(_credit(arms, arm, i, v) for i, v in enumerate(arms.items(arm)))
            for arm in arms.data
        }
        baseline = top.text("baseline", required=False) or "initial policy"
        found = top.optional_child("initial")
        initial = None
        if found is not None:
            outcomes = found.items("outcomes")
            initial = tuple(_credit(found, "outcomes", i, v) for i, v in enumerate(outcomes))
        return cls(baseline, top.text("judge", required=False) or GOLD, credits, initial)


def _credit(arms: Fields, arm: str, index: int, value: Any) -> float:
    if isinstance(value, str) and value in OUTCOME_CREDIT:
        return OUTCOME_CREDIT[value]
    if isinstance(value, int | float) and not isinstance(value, bool) and 0.0 <= value <= 1.0:
        return float(value)
    raise arms.fail(f"{arm}[{index}]", f"expected win/tie/loss or a probability, got {value!r}")


@dataclass(frozen=True)
class OutputRecord:
    """One policy output; ``stage`` is "start" (before training) or "end" (final policy)."""

    prompt: str
    response: str
    stage: str

    @classmethod
    def from_json(cls, value: Any, path: Path, line: int) -> OutputRecord:
        fields = Fields.of(value, path, line)
        stage = fields.text("stage")
        if stage not in STAGES:
            raise fields.fail("stage", f"must be one of {STAGES}, got {stage!r}")
        return cls(fields.text("prompt"), fields.text("response"), stage)


def load_outputs(path: Path) -> list[OutputRecord]:
    records = [OutputRecord.from_json(v, path, line) for line, v in read_jsonl(path)]
    if not records:
        raise ReportInputError(path, "no outputs recorded (file is empty)")
    return records
