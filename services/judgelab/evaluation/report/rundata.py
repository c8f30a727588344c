"""Everything the report reads from a run directory, loaded and validated in one place."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from judgelab.evaluation.report.errors import ReportInputError
from judgelab.evaluation.report.evaluate import (
    CrossScores,
    OutputRecord,
    PairwiseFile,
    load_outputs,
)
from judgelab.evaluation.report.judges import JudgesFile
from judgelab.evaluation.report.self_improve import SelfImproveFile, load_self_improve
from judgelab.evaluation.report.steps import StepRecord, load_steps


@dataclass(frozen=True)
class RunPaths:
    """Where each recorded input lives under the run directory."""

    root: Path

    @property
    def arms_dir(self) -> Path:
        return self.root / "arms"

    def steps(self, arm: str) -> Path:
        return self.arms_dir / arm / "steps.jsonl"

    @property
    def judges(self) -> Path:
        return self.root / "judges.json"

    @property
    def cross_scores(self) -> Path:
        return self.root / "evaluate" / "cross_scores.json"

    @property
    def pairwise(self) -> Path:
        return self.root / "evaluate" / "pairwise.json"

    @property
    def outputs_dir(self) -> Path:
        return self.root / "evaluate" / "outputs"


@dataclass(frozen=True)
class RunData:
    """The run's recorded data; an input that was not recorded is None / absent from its dict."""

    paths: RunPaths
    arms: tuple[str, ...]
    steps: dict[str, list[StepRecord]]
    judges: JudgesFile | None
    cross: CrossScores | None
    pairwise: PairwiseFile | None
    outputs: dict[str, list[OutputRecord]]
    self_improve: SelfImproveFile | None = None  # only a dpo-self-judge study records it


def load_run(run_dir: Path) -> RunData:
    """Read every input that exists; a malformed one raises ReportInputError (file:line)."""
    paths = RunPaths(Path(run_dir))
    if not paths.root.is_dir():
        raise ReportInputError(paths.root, "not a directory (expected a judgelab run directory)")
    steps = {
        arm_dir.name: load_steps(arm_dir / "steps.jsonl")
        for arm_dir in _sorted_dirs(paths.arms_dir)
        if (arm_dir / "steps.jsonl").is_file()
    }
    outputs = {
        file.stem: load_outputs(file)
        for file in sorted(paths.outputs_dir.glob("*.jsonl"))
        if file.is_file()
    }
    judges = JudgesFile.load(paths.judges) if paths.judges.is_file() else None
    cross = CrossScores.load(paths.cross_scores) if paths.cross_scores.is_file() else None
    pairwise = PairwiseFile.load(paths.pairwise) if paths.pairwise.is_file() else None
    self_improve = load_self_improve(paths.root / "evaluate")
    arms = _arm_order(steps, outputs, cross, pairwise)
    if self_improve is not None:
        arms = (*self_improve.arms, *(a for a in arms if a not in self_improve.arms))
    return RunData(paths, arms, steps, judges, cross, pairwise, outputs, self_improve)


def _sorted_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def _arm_order(
    steps: dict[str, list[StepRecord]],
    outputs: dict[str, list[OutputRecord]],
    cross: CrossScores | None,
    pairwise: PairwiseFile | None,
) -> tuple[str, ...]:
    """Arms with training logs first (sorted), then arms seen only in the evaluation files."""
    seen = list(steps)
    others = set(outputs) | (set(pairwise.credits) if pairwise else set())
    for row in cross.scores.values() if cross else ():
        others |= set(row)
    return (*seen, *sorted(others - set(seen)))
