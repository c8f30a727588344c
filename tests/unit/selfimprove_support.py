"""Fakes for the self-improvement tests: a pairwise judge engine and a gold labeller."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Sequence

from judgelab.engines.base import CandidateScores, Conversation, Engine
from judgelab.judging import Sample
from judgelab.units.gold import GoldLabel


def _section(user: str, name: str) -> str | None:
    found = re.search(rf"\[The Start of {name}\]\n(.*?)\n\[The End of {name}\]", user, re.S)
    return found[1] if found else None


class QualityJudgeEngine(Engine):
    """P(first shown better) = sigmoid(q(first) - q(second) + bias); q is ``quality(response,
    reference)`` with the reference the judge was shown (None when the prompt has none)."""

    name = "quality-judge"

    def __init__(self, quality: Callable[[str, str | None], float], bias: float = 0.0) -> None:
        self.quality = quality
        self.bias = bias
        self.calls: list[int] = []

    def score_candidates(
        self, conversations: Sequence[Conversation], candidates: Sequence[str], prefix: str = ""
    ) -> list[CandidateScores]:
        self.calls.append(len(conversations))
        results = []
        for conversation in conversations:
            user = conversation[-1].content
            first = _section(user, "Assistant A's Response")
            second = _section(user, "Assistant B's Response")
            reference = _section(user, "the Reference Answer")
            assert first is not None and second is not None
            z = self.quality(first, reference) - self.quality(second, reference) + self.bias
            p = 1 / (1 + math.exp(-z))
            results.append(CandidateScores(("A", "B"), {"A": math.log(p), "B": math.log(1 - p)}))
        return results

    def count_tokens(self, conversation: Conversation) -> int:
        return sum(len(m.content) for m in conversation)

    @property
    def context_length(self) -> int:
        return 1_000_000


def closeness(response: str, reference: str | None) -> float:
    """Matches the reference: 3; otherwise longer is better (what a judge without one sees)."""
    if reference is not None and response == reference:
        return 3.0
    return len(response) / 10


class LengthGold:
    """Gold score = number of characters, capped at 9; empty responses are invalid."""

    def __init__(self) -> None:
        self.samples: list[Sample] = []

    def label(self, samples: Sequence[Sample]) -> Iterator[GoldLabel]:
        self.samples += samples
        for s in samples:
            if not s.response:
                yield GoldLabel.refused(s.id, "empty_output", "")
                continue
            score = min(9, len(s.response))
            yield GoldLabel(s.id, score, float(score), ((score, 1.0),), "", True, None, None)

    def close(self) -> None:
        """Nothing to release."""
