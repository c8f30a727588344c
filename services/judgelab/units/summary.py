"""What an Annotate run produced: counts, invalid rate, the gold score histogram."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from judgelab.units.errors import BadRows
from judgelab.units.gold import GoldLabel

HISTOGRAM_WIDTH = 40


@dataclass(frozen=True)
class AnnotateSummary:
    """Counts of one Annotate run; ``outputs``: split name → file written."""

    outputs: Mapping[str, Path]
    records: Mapping[str, int]  # split → records
    items: Mapping[str, int]  # judge split → (prompt, response) items gold-labelled
    responses_sampled: int  # sampled by this run
    responses_reused: int  # read back from responses.jsonl (a rerun)
    gold_cached: int  # labels the annotator had in its cache
    valid: int
    invalid_reasons: Mapping[str, int]
    histogram: Mapping[int, int]  # gold score → valid items with it
    dropped: tuple[BadRows, ...] = ()
    dropped_rows: int = 0
    seconds: float = 0.0
    gold_stamps: tuple[str, ...] = field(default=())  # config hashes seen (one, normally)
    #: Gold rubric counts (``units.rubrics.RubricCounts.to_json``); None: no judge uses them.
    rubrics: Mapping[str, Any] | None = None

    @property
    def invalid(self) -> int:
        return sum(self.invalid_reasons.values())

    @property
    def labelled(self) -> int:
        return self.valid + self.invalid

    @property
    def invalid_rate(self) -> float:
        return self.invalid / self.labelled if self.labelled else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "outputs": {name: str(path) for name, path in self.outputs.items()},
            "records": dict(self.records),
            "items": dict(self.items),
            "responses_sampled": self.responses_sampled,
            "responses_reused": self.responses_reused,
            "gold_cached": self.gold_cached,
            "valid": self.valid,
            "invalid": self.invalid,
            "invalid_rate": self.invalid_rate,
            "invalid_reasons": dict(self.invalid_reasons),
            "histogram": {str(score): n for score, n in sorted(self.histogram.items())},
            "dropped_rows": self.dropped_rows,
            "dropped": [
                {"reason": p.reason, "count": p.count, p.unit + "s": list(p.rows)}
                for p in self.dropped
            ],
            "gold_config_hashes": list(self.gold_stamps),
            "seconds": round(self.seconds, 3),
        } | ({} if self.rubrics is None else {"rubrics": dict(self.rubrics)})

    def format(self) -> str:
        """A few lines for a terminal: counts, invalid rate and a text histogram."""
        splits = ", ".join(f"{name} {n}" for name, n in self.records.items())
        lines = [
            f"annotate: {splits} records; {self.labelled} items gold-labelled "
            f"({self.gold_cached} from the cache) in {self.seconds:.1f} s",
            f"responses: {self.responses_sampled} sampled, {self.responses_reused} reused",
            f"invalid: {self.invalid}/{self.labelled} ({self.invalid_rate:.1%})"
            + "".join(f", {reason} {n}" for reason, n in sorted(self.invalid_reasons.items())),
        ]
        if self.rubrics is not None:
            lines.append(
                f"gold rubrics: {self.rubrics['written']} written, {self.rubrics['reused']} "
                f"reused, {self.rubrics['fallback']} unusable (generic criteria instead)"
            )
        if self.dropped_rows:
            lines.append(f"dropped rows: {self.dropped_rows}")
            lines += [f"  - {problem.describe()}" for problem in self.dropped]
        if self.histogram:
            lines.append("gold scores:")
            top = max(self.histogram.values())
            for score in range(min(self.histogram), max(self.histogram) + 1):
                count = self.histogram.get(score, 0)
                bar = "#" * round(HISTOGRAM_WIDTH * count / top)
                lines.append(f"  {score:>3} {count:>5} {bar}")
        return "\n".join(lines)


def count_labels(labels: Iterable[GoldLabel]) -> tuple[int, Counter[str], Counter[int], int]:
    """(valid, invalid reasons, score histogram, cached) over ``labels``."""
    valid = 0
    reasons: Counter[str] = Counter()
    histogram: Counter[int] = Counter()
    cached = 0
    for label in labels:
        cached += label.cached
        if label.valid and label.score is not None:
            valid += 1
            histogram[label.score] += 1
        else:
            reasons[label.invalid_reason or "invalid"] += 1
    return valid, reasons, histogram, cached
