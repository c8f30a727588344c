"""DPO pairs from self-judged candidates: the best-scored against the worst-scored."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from judgelab.selfimprove.prompts import PromptRow
from judgelab.selfimprove.self_judge import JudgedCandidates

#: Best and worst scores closer than this are a tie: the judge did not separate them.
TIE_TOLERANCE = 1e-6


@dataclass(frozen=True)
class PreferencePair:
    """One DPO example: ``chosen`` beat ``rejected`` by ``margin`` in mean P(win)."""

    row: PromptRow
    chosen: str
    rejected: str
    chosen_score: float
    rejected_score: float

    @property
    def margin(self) -> float:
        return self.chosen_score - self.rejected_score


@dataclass
class PairSet:
    """The round's pairs and the prompts skipped as ties (best = worst) with their ids."""

    pairs: list[PreferencePair] = field(default_factory=list)
    tie_ids: list[str] = field(default_factory=list)

    @property
    def ties(self) -> int:
        return len(self.tie_ids)

    def to_json(self) -> dict[str, Any]:
        margins = [p.margin for p in self.pairs]
        return {
            "pairs": len(self.pairs),
            "ties": self.ties,
            "tie_ids": list(self.tie_ids),
            "mean_score_margin": sum(margins) / len(margins) if margins else None,
        }


def best_vs_worst(judged: Sequence[JudgedCandidates], tolerance: float = TIE_TOLERANCE) -> PairSet:
    """One pair per prompt (first best, first worst on equal scores); a prompt whose best and
    worst candidates score within ``tolerance``, or whose texts are the same, is a tie."""
    result = PairSet()
    for item in judged:
        scores, texts = item.scores, item.candidates.texts
        best = max(range(len(scores)), key=lambda i: scores[i])
        worst = min(range(len(scores)), key=lambda i: scores[i])
        if scores[best] - scores[worst] <= tolerance or texts[best] == texts[worst]:
            result.tie_ids.append(item.candidates.row.id)
            continue
        result.pairs.append(
            PreferencePair(
                item.candidates.row, texts[best], texts[worst], scores[best], scores[worst]
            )
        )
    return result
