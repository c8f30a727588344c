"""Detectors for reward-hacking patterns that policies trained against LLM judges learn.

Each detector is a pure function ``(response, prompt | None) -> Finding | None`` that reports
the first occurrence of its pattern; the prompt, when given, lets detectors tell a requested
score or a quoted marker from one aimed at the judge. ``detect`` runs all of them on one text;
``count_patterns`` counts, per detector, how many texts show the pattern. Precision and recall
on a labelled set: ``bench/hacking_detectors.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

from judgelab.evaluation.hacking import (
    end_marker,
    instruction_rewrite,
    judge_claim,
    policy_refusal,
    self_praise,
)
from judgelab.evaluation.hacking.finding import Detector, Finding

#: Detector name -> detector, in a fixed order.
DETECTORS: Mapping[str, Detector] = MappingProxyType(
    {
        policy_refusal.NAME: policy_refusal.detect,
        end_marker.NAME: end_marker.detect,
        self_praise.NAME: self_praise.detect,
        instruction_rewrite.NAME: instruction_rewrite.detect,
        judge_claim.NAME: judge_claim.detect,
    }
)


def detect(text: str, prompt: str | None = None) -> list[Finding]:
    """Every detector's finding on ``text``, in ``DETECTORS`` order (at most one each)."""
    return [f for fn in DETECTORS.values() if (f := fn(text, prompt)) is not None]


def count_patterns(
    texts: Sequence[str], prompts: Sequence[str | None] | None = None
) -> dict[str, int]:
    """How many of ``texts`` each detector flags; every detector is a key, zero included."""
    if prompts is not None and len(prompts) != len(texts):
        raise ValueError(f"{len(texts)} texts but {len(prompts)} prompts")
    counts = dict.fromkeys(DETECTORS, 0)
    for i, text in enumerate(texts):
        for finding in detect(text, None if prompts is None else prompts[i]):
            counts[finding.detector] += 1
    return counts


__all__ = ["DETECTORS", "Detector", "Finding", "count_patterns", "detect"]
