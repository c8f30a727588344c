"""Adversarial-pattern counts per stage and start-vs-end sample pairs from an arm's outputs."""

from __future__ import annotations

from dataclasses import dataclass

from judgelab.evaluation.hacking import DETECTORS, count_patterns, detect
from judgelab.evaluation.report.evaluate import STAGES, OutputRecord


@dataclass(frozen=True)
class StageCounts:
    """How many of the stage's ``n`` outputs each detector flags (every detector is a key)."""

    n: int
    counts: dict[str, int]


@dataclass(frozen=True)
class SamplePair:
    """One prompt's start and end output (None where that stage has no output for it)."""

    prompt: str
    start: str | None
    end: str | None

    def flags(self, stage: str) -> list[str]:
        text = self.start if stage == "start" else self.end
        return [] if text is None else [f.detector for f in detect(text, self.prompt)]


def stage_counts(outputs: list[OutputRecord]) -> dict[str, StageCounts]:
    """Per stage ("start", "end"): the pattern counts over that stage's outputs."""
    result = {}
    for stage in STAGES:
        chosen = [o for o in outputs if o.stage == stage]
        counts = count_patterns([o.response for o in chosen], [o.prompt for o in chosen])
        result[stage] = StageCounts(len(chosen), counts)
    return result


def sample_pairs(outputs: list[OutputRecord], k: int = 3) -> list[SamplePair]:
    """The first ``k`` prompts (in file order) that have both a start and an end output; if
    fewer exist, prompts with only one stage fill the rest."""
    start: dict[str, str] = {}
    end: dict[str, str] = {}
    order: list[str] = []
    for o in outputs:
        (start if o.stage == "start" else end).setdefault(o.prompt, o.response)
        if o.prompt not in order:
            order.append(o.prompt)
    both = [p for p in order if p in start and p in end]
    one = [p for p in order if p not in both]
    return [SamplePair(p, start.get(p), end.get(p)) for p in (both + one)[:k]]


DETECTOR_NAMES: tuple[str, ...] = tuple(DETECTORS)
