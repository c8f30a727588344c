"""Records for a DataSpec: read the source, map its fields, check every row, split.

Bad rows are never dropped silently: by default any bad row is a :class:`DataError` naming
the rows and the reason; with ``on_bad_rows="drop"`` they are left out and reported
(:attr:`LoadedData.dropped`: reason, count, rows). Splits are a shuffle of the usable records
with ``data.seed``, carved in the order judge_train, judge_eval, policy_train, policy_eval.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from judgelab.spec.data import DataSpec, SplitSizes
from judgelab.spec.judges import ScoreScale
from judgelab.units.errors import BadRows, DataError
from judgelab.units.records import Columns, Record, RowChecker, missing_columns
from judgelab.units.sources import RawRows, read_source

__all__ = [
    "SPLIT_NAMES",
    "BadRows",
    "DataError",
    "LoadOptions",
    "LoadedData",
    "Record",
    "Splits",
    "load_records",
    "load_splits",
    "split_records",
]

OnBadRows = Literal["error", "drop"]
SplitName = Literal["judge_train", "judge_eval", "policy_train", "policy_eval"]
SPLIT_NAMES: tuple[SplitName, ...] = ("judge_train", "judge_eval", "policy_train", "policy_eval")


@dataclass(frozen=True)
class LoadOptions:
    """What the spec does not say (yet): a label column to check, and what bad rows do."""

    label: str | None = None  # column with an existing score, checked against the gold scale
    on_bad_rows: OnBadRows = "error"

    @classmethod
    def from_spec(cls, data: DataSpec) -> LoadOptions:
        """Reads `data.fields.label` and `data.on_bad_rows` where the spec has them."""
        label = getattr(data.fields, "label", None)
        on_bad_rows = getattr(data, "on_bad_rows", "error")
        return cls(
            label if isinstance(label, str) else None, "drop" if on_bad_rows == "drop" else "error"
        )


@dataclass(frozen=True)
class LoadedData:
    """The usable records in source order, and the rows left out (with ``drop`` only)."""

    origin: str
    records: tuple[Record, ...]
    dropped: tuple[BadRows, ...] = ()
    dropped_rows: int = 0

    def dropped_report(self) -> str:
        """One line per reason, or "" when nothing was dropped."""
        if not self.dropped_rows:
            return ""
        lines = [f"dropped {self.dropped_rows} bad row(s) of {self.origin}:"]
        return "\n".join(lines + [f"  - {problem.describe()}" for problem in self.dropped])


@dataclass(frozen=True)
class Splits:
    """Disjoint record sets, each in shuffled order."""

    judge_train: tuple[Record, ...]
    judge_eval: tuple[Record, ...]
    policy_train: tuple[Record, ...]
    policy_eval: tuple[Record, ...]

    def items(self) -> Iterator[tuple[SplitName, tuple[Record, ...]]]:
        for name in SPLIT_NAMES:
            yield name, getattr(self, name)


def load_records(
    data: DataSpec,
    scale: ScoreScale,
    options: LoadOptions | None = None,
    base_dir: Path | None = None,
) -> LoadedData:
    """Every usable record of the source. ``scale``: the gold scale labels must lie on;
    ``base_dir``: what a relative local path is relative to (default: the working directory)."""
    options = options if options is not None else LoadOptions.from_spec(data)
    raw = read_source(data, base_dir)
    columns = Columns.of(data.fields, options.label)
    _check_columns(raw, columns)
    checker = RowChecker(columns, scale)
    records = [r for number, value in raw.rows if (r := checker.record(number, value)) is not None]
    problems = _grouped(checker.problems, raw.unit)
    if problems and options.on_bad_rows == "error":
        raise DataError(f"{raw.origin} has bad rows ({_drop_hint()}):", problems)
    dropped = len({number for _, number in checker.problems})
    if not records:
        raise DataError(f"{raw.origin} has no usable records", problems)
    return LoadedData(raw.origin, tuple(records), tuple(problems), dropped)


def split_records(records: tuple[Record, ...], sizes: SplitSizes, seed: int) -> Splits:
    """Shuffle with ``seed`` and carve the splits; DataError when there are too few records."""
    if sizes.total > len(records):
        raise DataError(
            f"the splits need {sizes.total} records (judge_train {sizes.judge_train} + "
            f"judge_eval {sizes.judge_eval} + policy_train {sizes.policy_train} + policy_eval "
            f"{sizes.policy_eval}) but the data has only {len(records)} usable records; "
            "lower data.splits or use more data"
        )
    order = list(records)
    random.Random(seed).shuffle(order)
    parts: dict[str, tuple[Record, ...]] = {}
    start = 0
    for name in SPLIT_NAMES:
        size: int = getattr(sizes, name)
        parts[name] = tuple(order[start : start + size])
        start += size
    return Splits(**parts)


def load_splits(
    data: DataSpec,
    scale: ScoreScale,
    options: LoadOptions | None = None,
    base_dir: Path | None = None,
) -> tuple[LoadedData, Splits]:
    """:func:`load_records` then :func:`split_records` with the spec's sizes and seed."""
    loaded = load_records(data, scale, options, base_dir)
    try:
        splits = split_records(loaded.records, data.splits, data.seed)
    except DataError as error:
        note = f" ({loaded.dropped_rows} bad rows dropped)" if loaded.dropped_rows else ""
        raise DataError(f"{loaded.origin}: {error}{note}", loaded.dropped) from error
    return loaded, splits


def _drop_hint() -> str:
    if "on_bad_rows" in DataSpec.model_fields:
        return "fix them, or set data.on_bad_rows: drop to leave them out with a report"
    return "fix them, or load with on_bad_rows='drop' to leave them out with a report"


def _check_columns(raw: RawRows, columns: Columns) -> None:
    missing = missing_columns(raw, columns)
    if not missing:
        return
    names = ", ".join(repr(c) for c in missing)
    if raw.columns is not None:
        have = ", ".join(raw.columns) or "none"
        raise DataError(
            f"{raw.origin} has no column {names} (its columns: {have}); "
            "set data.fields to the columns that hold each field"
        )
    raise DataError(
        f"no row of {raw.origin} has {names}; set data.fields to the keys that hold each field"
    )


def _grouped(problems: list[tuple[str, int]], unit: str) -> list[BadRows]:
    rows: dict[str, list[int]] = defaultdict(list)
    for reason, number in problems:
        rows[reason].append(number)
    return [BadRows(reason, tuple(numbers), unit) for reason, numbers in rows.items()]
